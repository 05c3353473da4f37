import type { Server as HttpServer } from 'node:http';
import type { Server as IoServer } from 'socket.io';

export interface GracefulStopSetup {
  /** 'destination' when sio-steer is attached with `--key destination` (behind `nginx-conf --key destination`). Default 'address'. */
  key?: 'address' | 'destination';
  /** Where the one warning about an engine.io this module does not know goes. Default console.warn. */
  warn?: (line: string) => void;
}

export interface StopOptions {
  /** Keep serving the sessions here for up to this long, or until none is left. Default 10000 ms. */
  drainMs?: number;
  /** Then say goodbye to each session within this long; io.close() closes what is left. Default 5000 ms. */
  goodbyeMs?: number;
  /** A long-polling client that does not say it has read its goodbye (it had a POST in flight) counts as having read it after its round trip, measured just before, + readMs. Keep it below Socket.IO's shortest reconnection delay (0.5 s by default). Default 250 ms. */
  readMs?: number;
  /** How long a session that got its goodbye still takes POSTs. Default 1000 ms. */
  graceMs?: number;
  /** sio-steer's control socket, `<lock dir>/<port>.sock` (`/run/sio-steer/5001.sock`): clients are released to the successor over it. */
  controlSocket?: string;
  /** How long a release may wait for the controller's answer; then the drain carries on as without a controller. Default 2000 ms. */
  controlTimeoutMs?: number;
  /** One line per step. */
  log?: (line: string) => void;
}

/** Call before the app's io.on('connection', ...) handlers; returns stop(), which resolves when the worker may exit. */
export function gracefulStop(io: IoServer, httpServer: HttpServer, setup?: GracefulStopSetup): (options?: StopOptions) => Promise<void>;

/** sio-steer's control socket: one request line, one reply line. Null if nothing listens at `path`. */
export function connectControl(
  path: string,
  options?: { timeoutMs?: number; log?: (line: string) => void; onGiveUp?: () => void },
): Promise<{ request(line: string): Promise<string>; failed(): boolean; close(): void } | null>;

/** The engine.io version behind `io` and whether this module knows it (else stop() closes plainly). */
export function engineSupport(io: IoServer): { version: string | null; known: boolean; getEvent?: string };

/** The engine.io minor versions this module was tested on, e.g. ['6.5', '6.6']. */
export const KNOWN_ENGINES: readonly string[];
