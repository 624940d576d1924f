// Server clock estimate. Windows are decided on the server; the phone only needs to
// *display* the server's countdown, which it cannot do with its own clock (phones are
// often minutes off). Each ping/pong gives offset = server_time - midpoint(t0, t1);
// the sample with the lowest round trip has the smallest error bound (RTT/2), so it wins.

/** Keeps the best clock-offset sample and answers "what time is it on the server". */
export class ServerClock {
  constructor() {
    /** Server time minus local time, in ms. */
    this.offsetMs = 0;
    /** Round trip of the sample the offset came from; Infinity before any sample. */
    this.rttMs = Infinity;
    this.samples = 0;
  }

  /** A coarse first estimate from a server timestamp (e.g. `welcome`), error ≤ one RTT. */
  roughly(serverTime) {
    if (this.samples === 0 && Number.isFinite(serverTime)) this.offsetMs = serverTime - Date.now();
  }

  /** Starts a new round of measurement (after a reconnect the path may have changed). */
  reset() {
    this.rttMs = Infinity;
    this.samples = 0;
  }

  /** Records one pong: `t0` local send time, `serverTime` from the server, received now. */
  sample(t0, serverTime) {
    const t1 = Date.now();
    const rtt = t1 - t0;
    if (!(rtt >= 0) || !Number.isFinite(serverTime)) return;
    this.samples += 1;
    if (rtt <= this.rttMs) {
      this.rttMs = rtt;
      this.offsetMs = serverTime - (t0 + t1) / 2;
    }
  }

  /** The server's current time in ms since the epoch. */
  now() {
    return Date.now() + this.offsetMs;
  }
}
