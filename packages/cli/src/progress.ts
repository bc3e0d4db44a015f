/** A progress bar on stderr when it is a TTY (cli-progress); callers skip it otherwise. */
import cliProgress from 'cli-progress';

export interface Progress {
  update(value: number, total: number, info?: string): void;
  stop(): void;
}

export function progressBar(label: string): Progress {
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% {value}/{total} pages {info}`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(value, total, info = '') {
      if (!started) {
        bar.start(total, value, { info });
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(value, { info });
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
