import type { Server as HttpServer } from 'node:http';
import type { Server as IoServer } from 'socket.io';

export interface GracefulStopSetup {
  /** The Redis client the Redis Streams adapter was made with: what a moved session missed is read from its stream. */
  redis?: unknown;
  /** The adapter's stream name, if not the default "socket.io". */
  streamName?: string;
  /** Where the workers find each other; default $XDG_RUNTIME_DIR/sio-steer or <tmp>/sio-steer-<uid>. Must be this user's alone. */
  peerDir?: string;
  /** 'destination' when sio-steer is attached with `--key destination` (behind `nginx-conf --key destination`). Default 'address'. */
  key?: 'address' | 'destination';
  /** This worker's PM2 instance; default NODE_APP_INSTANCE. Its successor is the newest worker of the same instance. */
  instance?: number | null;
  /** false: a request for a session another worker holds is refused ("400 Session ID unknown") as without this module, instead of passed on. Sessions handed over by a stop are still followed. Default true. */
  passOn?: boolean;
  /** Where the one warning about an engine.io this module does not know goes. Default console.warn. */
  warn?: (line: string) => void;
  /** One line per recovery or handover problem. */
  log?: (line: string) => void;
}

export interface StopOptions {
  /** Keep serving the sessions here for this long first (they may end on their own). Default 0. */
  drainMs?: number;
  /** Hand over or close every session within this long; io.close() closes what is left. Default 10000 ms. */
  goodbyeMs?: number;
  /** How long to look for the successor (the newest worker of this instance) before handing the sessions to another instance's worker. Default 5000 ms. */
  successorWaitMs?: number;
  /** sio-steer's control socket, `<lock dir>/<port>.sock` (`/run/sio-steer/5001.sock`): clients handed over are released to the successor over it. */
  controlSocket?: string;
  /** How long a release may wait for the controller's answer; then the stop carries on without it. Default 2000 ms. */
  controlTimeoutMs?: number;
  /** One line per step. */
  log?: (line: string) => void;
}

export interface GracefulStop {
  (options?: StopOptions): Promise<{ handed: number; closed: number; failed: number }>;
  /** Resolves once the other workers can find this one (await it before telling PM2 it is ready). */
  ready: Promise<unknown>;
}

/** Call before the app's io.on('connection', ...) handlers, after `io` is attached to `httpServer`. */
export function gracefulStop(io: IoServer, httpServer: HttpServer, setup?: GracefulStopSetup): GracefulStop;

/** sio-steer's control socket: one request line, one reply line. Null if nothing listens at `path`. */
export function connectControl(
  path: string,
  options?: { timeoutMs?: number; log?: (line: string) => void; onGiveUp?: () => void },
): Promise<{ request(line: string): Promise<string>; failed(): boolean; close(): void } | null>;

/** The engine.io version behind `io` and whether this module knows it (else stop() closes plainly). */
export function engineSupport(io: IoServer): { version: string | null; known: boolean; getEvent?: string };

/** The engine.io minor versions this module was tested on, e.g. ['6.5', '6.6']. */
export const KNOWN_ENGINES: readonly string[];
