/**
 * Which host commands a test needs and lacks. Tests on real components skip (and say why) where a
 * tool is missing — except under CI (.ci/run sets VICOVER_REQUIRE_TOOLS=1): there a missing tool is an
 * install step .ci/run forgot, and it fails the run instead of hiding behind a skip.
 */
import { spawnSync } from 'node:child_process';

/** @param {string} cmd */
export function haveCommand(cmd) {
  return spawnSync('sh', ['-c', `command -v '${cmd.replace(/'/g, '')}'`], { stdio: 'ignore' }).status === 0;
}

/** The Python modules (under /usr/bin/python3, where Debian installs them) that cannot be imported. */
function missingPython(mods) {
  return mods.filter((m) => spawnSync('/usr/bin/python3', ['-c', `import ${m}`], { stdio: 'ignore' }).status !== 0).map((m) => `python3 module ${m}`);
}

/**
 * @param {readonly string[]} cmds commands looked up on PATH
 * @param {{ python?: readonly string[] }} [o] Python modules needed
 * @returns {string[]} what is missing (empty: all there)
 */
export function missingCommands(cmds, o = {}) {
  const missing = [...cmds.filter((c) => !haveCommand(c)), ...missingPython(o.python ?? [])];
  if (missing.length && process.env.VICOVER_REQUIRE_TOOLS === '1') {
    throw new Error(`VICOVER_REQUIRE_TOOLS=1 and these are not installed: ${missing.join(', ')} (add them to .ci/run)`);
  }
  return missing;
}
