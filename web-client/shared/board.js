// The public board as a client keeps it: taken units and sessions at (epoch, seq).
// Board changes are idempotent (a unit taken twice is still taken once), so a delta
// that overlaps what we already have is safe to apply; only a gap needs a resume.

/** Live board state built from `snapshot` and `delta` messages. */
export class Board {
  constructor() {
    this.epoch = null;
    this.seq = null;
    /** unit id → {unit, family_name, rank, how, at} */
    this.taken = new Map();
    /** session id → SessionInfo */
    this.sessions = new Map();
    /** Snapshot parts still to come; the board is whole only at 0. */
    this.partsLeft = 0;
  }

  /** Whether the board is whole: a complete snapshot (and deltas) applied. Only a
   * whole board may resume from its (epoch, seq); a partial one needs a new snapshot. */
  isWhole() {
    return this.seq !== null && this.partsLeft === 0;
  }

  /** Replaces everything with a snapshot. A snapshot comes in parts: part 0 replaces
   * the board, every part adds its taken units and sessions. */
  loadSnapshot(m) {
    if (m.part > 0) {
      if (this.partsLeft === 0 || m.seq !== this.seq) return; // not the snapshot we are building
      for (const t of m.taken) this.taken.set(t.unit, t);
      for (const s of m.sessions) this.sessions.set(s.id, s);
      this.partsLeft -= 1;
      return;
    }
    this.partsLeft = Math.max(0, (m.parts ?? 1) - 1);
    this.epoch = m.epoch;
    this.seq = m.seq;
    this.taken = new Map(m.taken.map((t) => [t.unit, t]));
    this.sessions = new Map(m.sessions.map((s) => [s.id, s]));
  }

  /**
   * Applies a delta. Returns 'applied', 'stale' (already seen) or 'gap' (the caller
   * must resume from `this.epoch/this.seq`). Changes applied are returned in `out`.
   */
  applyDelta(m, out = []) {
    if (this.seq === null || m.epoch !== this.epoch || m.prev > this.seq) return 'gap';
    if (m.seq <= this.seq) return 'stale';
    for (const c of m.changes) {
      if (c.kind === 'taken') {
        if (!this.taken.has(c.unit)) out.push(c);
        this.taken.set(c.unit, c);
      } else if (c.kind === 'session_closed') {
        const s = this.sessions.get(c.session);
        if (s) this.sessions.set(c.session, { ...s, closed: true });
        out.push(c);
      } else if (c.kind === 'session_added') {
        this.sessions.set(c.session.id, c.session);
        out.push(c);
      }
    }
    this.seq = m.seq;
    return 'applied';
  }

  /** Sessions in time order. */
  sessionList() {
    return [...this.sessions.values()].sort((a, b) => a.start - b.start || a.first_rank - b.first_rank);
  }

  /** Taken units, most recent first. */
  latest(n) {
    return [...this.taken.values()].sort((a, b) => b.at - a.at || b.rank - a.rank).slice(0, n);
  }
}
