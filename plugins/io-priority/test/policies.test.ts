import { describe, expect, it } from 'vitest';
import type { IoState } from '@vicover/core';
import { priorityShares } from '@vicover/plugin-io-priority';
import { proportionalShares } from '@vicover/plugin-io-proportional';
import { deadlineShares } from '@vicover/plugin-io-deadline';

const MiB = 1048576;

function state(p: { elapsedS?: number; dumpLeftMiB?: number; dumpRateMiB?: number; dumpActive?: boolean; recStarted?: boolean; recHealthy?: boolean; recReadMiB?: number; recWriteMiB?: number } = {}): IoState {
  const dumpRate = (p.dumpRateMiB ?? 50) * MiB;
  return {
    sessionId: 's',
    elapsedMs: (p.elapsedS ?? 1) * 1000,
    tickMs: 100,
    deviceBps: 100 * MiB,
    deviceIops: 0,
    dump: { active: p.dumpActive ?? true, bytesDone: 0, bytesLeft: (p.dumpLeftMiB ?? 1000) * MiB, rateBps: dumpRate, idle: false },
    memory: { handedOverBytes: 0, totalBytes: 1024 * MiB },
    recovery: { started: p.recStarted ?? true, healthy: p.recHealthy ?? false, readBps: (p.recReadMiB ?? 0) * MiB, writeBps: (p.recWriteMiB ?? 0) * MiB, readIops: 0, writeIops: 0 },
    previous: { dumpBps: Infinity, recoveryBps: Infinity },
  };
}

describe('priority policy', () => {
  const o = { favor: 'recovery' as const, headroom: 0.1, minOtherFraction: 0.05 };
  it('leaves the recovery VM unthrottled and gives the dump the rest', () => {
    const s = priorityShares(state({ recReadMiB: 60 }), o);
    expect(s.recoveryBps).toBe(Infinity);
    expect(s.dumpBps / MiB).toBeCloseTo(100 - 66, 5);
  });
  it('never starves the other side below the floor', () => {
    expect(priorityShares(state({ recReadMiB: 200 }), o).dumpBps / MiB).toBeCloseTo(5, 5);
  });
  it('gives the dump the device before the recovery VM exists', () => {
    expect(priorityShares(state({ recStarted: false }), o)).toMatchObject({ dumpBps: Infinity, recoveryBps: Infinity });
  });
  it('favor dump: the recovery VM gets what the dump leaves', () => {
    const s = priorityShares(state({ dumpRateMiB: 70 }), { ...o, favor: 'dump' });
    expect(s.dumpBps).toBe(Infinity);
    expect(s.recoveryBps / MiB).toBeCloseTo(23, 5);
  });
});

describe('proportional policy', () => {
  const o = { dumpWeight: 1, recoveryWeight: 3, workConserving: true, idleFraction: 0.9 };
  it('splits by weight when both sides use their shares', () => {
    const s = proportionalShares(state({ recReadMiB: 75, dumpRateMiB: 25 }), o);
    expect(s.dumpBps / MiB).toBeCloseTo(25, 5);
    expect(s.recoveryBps / MiB).toBeCloseTo(75, 5);
  });
  it('is work-conserving: an idle recovery VM lends its share to the dump', () => {
    const s = proportionalShares(state({ recReadMiB: 10, dumpRateMiB: 25 }), o);
    expect(s.dumpBps / MiB).toBeCloseTo(90, 5);
    expect(s.recoveryBps / MiB).toBeCloseTo(75, 5); // keeps its own share to take it back
  });
  it('not work-conserving: fixed split', () => {
    const s = proportionalShares(state({ recReadMiB: 0 }), { ...o, workConserving: false });
    expect(s.dumpBps / MiB).toBeCloseTo(25, 5);
  });
});

describe('deadline policy', () => {
  it('gives the dump the rate it needs and the rest to the recovery VM', () => {
    // 400 MiB left, 10 s left (deadline 11 s at 1 s elapsed): needs 40 MiB/s + 10 %.
    const s = deadlineShares(state({ dumpLeftMiB: 400, elapsedS: 1 }), { target: 'dump', seconds: 11, margin: 0.1, minOtherFraction: 0.05 });
    expect(s.dumpBps / MiB).toBeCloseTo(44, 5);
    expect(s.recoveryBps / MiB).toBeCloseTo(56, 5);
    expect(s.warning).toBeUndefined();
  });
  it('says when the dump deadline cannot be met', () => {
    const s = deadlineShares(state({ dumpLeftMiB: 5000, elapsedS: 1 }), { target: 'dump', seconds: 11, margin: 0.1, minOtherFraction: 0.05 });
    expect(s.dumpBps).toBe(Infinity);
    expect(s.recoveryBps / MiB).toBeCloseTo(5, 5);
    expect(s.warning).toMatch(/dump deadline of 11 s cannot be met: 5000 MiB left in 10\.0 s needs 550\.0 MiB\/s of the device's 100\.0 MiB\/s/);
  });
  it('recovery target: recovery unthrottled until healthy, then no constraint; a missed deadline is reported', () => {
    const o = { target: 'recovery' as const, seconds: 30, margin: 0.1, minOtherFraction: 0.05 };
    expect(deadlineShares(state({ recReadMiB: 40, elapsedS: 5 }), o)).toMatchObject({ recoveryBps: Infinity });
    expect(deadlineShares(state({ recHealthy: true }), o)).toMatchObject({ dumpBps: Infinity, recoveryBps: Infinity });
    expect(deadlineShares(state({ elapsedS: 31 }), o).warning).toMatch(/recovery deadline of 30 s missed/);
  });
});
