/**
 * A token bucket that paces the dump writer at the share the I/O policy gives it. Tokens are bytes;
 * `take(n)` waits until the bucket can pay for n bytes (debt allowed, so blocks larger than the burst
 * still pass, at the right average rate). The rate can change at any time (every scheduler tick).
 */
export class TokenBucket {
  private rate: number;
  private tokens: number;
  private last: number;
  private readonly burstSeconds: number;
  /** Bytes taken over the bucket's life (the writer's achieved volume). */
  taken = 0;

  constructor(rateBps = Infinity, burstSeconds = 0.1, private readonly now: () => number = () => performance.now()) {
    this.rate = rateBps;
    this.burstSeconds = burstSeconds;
    this.tokens = Number.isFinite(rateBps) ? rateBps * burstSeconds : 0;
    this.last = this.now();
  }

  get rateBps(): number {
    return this.rate;
  }

  setRate(rateBps: number): void {
    this.refill();
    this.rate = rateBps > 0 ? rateBps : 0;
    if (Number.isFinite(this.rate)) this.tokens = Math.min(this.tokens, this.rate * this.burstSeconds);
  }

  private refill(): void {
    const t = this.now();
    if (Number.isFinite(this.rate)) {
      this.tokens = Math.min(this.tokens + ((t - this.last) / 1000) * this.rate, Math.max(this.rate * this.burstSeconds, 1));
    }
    this.last = t;
  }

  /** Wait until n bytes may be written. Resolves at once when the rate is unlimited. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    this.taken += n;
    if (!Number.isFinite(this.rate)) return;
    this.refill();
    this.tokens -= n;
    while (this.tokens < 0) {
      if (signal?.aborted) return;
      // A zero rate (paused by the policy) re-checks every 50 ms for a new rate.
      const waitMs = this.rate > 0 ? Math.min(250, (-this.tokens / this.rate) * 1000) : 50;
      await new Promise((r) => setTimeout(r, Math.max(1, waitMs)));
      this.refill();
      if (!Number.isFinite(this.rate)) return;
    }
  }
}
