const core = await import('@vicover/core');
const orig = core.CrashSession.prototype.run;
core.CrashSession.prototype.run = async function () { process.stderr.write(`session-start ${performance.now().toFixed(0)}\n`); const r = await orig.call(this); process.stderr.write(`session-end ${performance.now().toFixed(0)}\n`); return r; };
process.on('exit', () => process.stderr.write(`exit-event ${performance.now().toFixed(0)}\n`));
const w = process.stdout.write.bind(process.stdout);
process.stdout.write = (...a) => { process.stderr.write(`stdout ${performance.now().toFixed(0)}\n`); return w(...a); };
process.argv = [process.argv[0], 'bin.js', ...process.argv.slice(2)];
await import('./dist/bin.js');
