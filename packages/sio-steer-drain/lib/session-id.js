// Engine.IO session ids that name the worker holding the session: `<20 random>.<8 token>`, where
// the token names the worker's private socket (<peer dir>/<token>.sock). A worker that receives a
// request for a session it does not hold passes it to the worker the id names.
//
// The id comes back from the client, so it is parsed strictly: exactly 29 characters, base64url
// only, one dot. A token can only ever name a socket file in the peer folder: no '/', no '.', no
// '..', and never a path of the client's making.
'use strict';
const crypto = require('node:crypto');

const SESSION_ID = /^[A-Za-z0-9_-]{20}\.([A-Za-z0-9_-]{8})$/;
const TOKEN = /^[A-Za-z0-9_-]{8}$/;

/** A worker's token: 48 random bits, 8 base64url characters. */
const newToken = () => crypto.randomBytes(6).toString('base64url');

/** A session id held by the worker of `token`: 120 random bits (as Engine.IO's own ids), then the token. */
const newSessionId = (token) => `${crypto.randomBytes(15).toString('base64url')}.${token}`;

/** The token in a session id, or null for anything that is not one of ours. */
function tokenOf(sid) {
  if (typeof sid !== 'string' || sid.length !== 29) return null;
  const m = SESSION_ID.exec(sid);
  return m ? m[1] : null;
}

const isToken = (t) => typeof t === 'string' && t.length === 8 && TOKEN.test(t);

module.exports = { newToken, newSessionId, tokenOf, isToken };
