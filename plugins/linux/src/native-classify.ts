/**
 * The native struct-page decode (native/classify.c → native/build/vicover-classify.node): the
 * classifier's hot loop in C, with the same parameters, figures and answers as the JavaScript loop in
 * classify.ts. The JavaScript loop is fast only after V8 has optimised it, which a short-lived
 * `vicover dump` does not live long enough for (and the warm-up that avoids it costs as much). Optional:
 * without it (not built, or VICOVER_NATIVE_CLASSIFY=0) the JavaScript loop runs.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface NativeClassifier {
  /** classify.ts's classifyRun, with `bytes` for both of its views of the window. Throws a RangeError on parameters out of bounds. */
  classifyRun(P: Int32Array, bytes: Uint8Array, excluded: Uint8Array, st: Float64Array, blockPfn: number, nPages: number, from: number, to: number, maxPfn: number): void;
  readonly paramCount: number;
  readonly figureCount: number;
}

let loaded: NativeClassifier | null | undefined;

/** The native loop for a parameter and figure layout, or null when it was not built, is turned off, or was built for another layout. */
export function nativeClassifier(paramCount: number, figureCount: number): NativeClassifier | null {
  if (loaded === undefined) {
    loaded = null;
    if (process.env.VICOVER_NATIVE_CLASSIFY !== '0') {
      const file = process.env.VICOVER_NATIVE_CLASSIFY_BIN || fileURLToPath(new URL('../native/build/vicover-classify.node', import.meta.url));
      try {
        const m = createRequire(import.meta.url)(file) as NativeClassifier;
        if (typeof m.classifyRun === 'function') loaded = m;
      } catch {
        // not built: the JavaScript loop
      }
    }
  }
  return loaded && loaded.paramCount === paramCount && loaded.figureCount === figureCount ? loaded : null;
}
