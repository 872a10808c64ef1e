/**
 * hooky's client SDK: `import { createClient } from 'hooky/client'`. It imports only the wire
 * protocol's schemas and types and npm packages, never a server module, so it bundles for the
 * browser on its own.
 */
export {
  createClient,
  HookyError,
  toWsUrl,
  type ClientErrorCode,
  type ClientEvents,
  type ClientOptions,
  type ConnectError,
  type ErrorData,
  type HookyClient,
} from './client.js';
export { backoffDelay, type BackoffOptions } from './backoff.js';
export type { WebSocketClass } from './socket.js';
export { PROTOCOL, roomOf, type CapturedRequest, type WsErrorCode } from '../protocol.js';
