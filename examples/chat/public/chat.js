// The example chat's page: plain JavaScript and the Socket.IO client the server ships
// (/socket.io/socket.io.min.js). Pick a user and a peer; then a conversation with a typing indicator
// and an unread badge, the room's activity stream with a toast, and the connection state (transport,
// worker, reconnects) in the header.
//
// Nothing is lost across a reconnect (a worker replaced by `pm2 reload`, a network hiccup):
// - messages to send wait in the client's queue until the server acks them (retries), and carry an
//   id, so the server stores and delivers each one once even if it is sent twice;
// - on every (re)connect the page asks for what reached its inbox meanwhile (sync);
// - a message id already on the page is not shown again.
'use strict';
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi',
  'ivan', 'judy', 'mallory', 'niaj', 'olivia', 'peggy', 'rupert', 'sybil', 'trent', 'victor', 'walter', 'wendy'];
const $ = (id) => document.getElementById(id);

let socket, me, peer;
let lastSeq = 0;        // the newest inbox entry this page has: sync asks for what came after it
let connects = 0;
let lastTypingSent = 0, typingTimer, toastTimer;
const shown = new Set(); // ids of the messages on the page

// --- picking a user, then whom to talk to --------------------------------------------------------
const params = new URLSearchParams(location.search); // ?user=alice&peer=bob preselects
for (const u of USERS) $('me').add(new Option(u, u));
$('me').value = params.get('user') ?? USERS[0];

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  me = $('me').value;
  for (const u of USERS) if (u !== me) $('peer').add(new Option(u, u));
  openConversation(params.get('peer') ?? $('peer').value);
  $('login').hidden = true;
  $('app').hidden = false;
  $('title').textContent = me;
  connect();
  $('text').focus();
});

$('peer').addEventListener('change', () => {
  openConversation($('peer').value);
  socket.emit('sync', { since: 0 }, (err, res) => { if (!err) res.messages.forEach(addMessage); }); // its history
});

function openConversation(name) {
  peer = name;
  $('peer').value = name;
  $('messages').replaceChildren();
  shown.clear();
  hideTyping();
}

// --- the connection ---------------------------------------------------------------------------
function connect() {
  // retries + ackTimeout: an emit is sent again until the server acks it (at least once; the
  // server drops a message id it has seen). Typing is volatile instead: late typing is no typing.
  socket = io({ auth: { user: me, room: 'lobby' }, ackTimeout: 5000, retries: 20 });

  socket.on('connect', () => {
    connects++;
    $('reconnects').textContent = connects - 1;
    setState('connected');
    showTransport();
    socket.io.engine.once('upgrade', showTransport); // polling -> websocket, if it can
    socket.emit('sync', { since: lastSeq }, (err, res) => {
      if (err) return;
      res.messages.forEach(addMessage);
      setUnread(res.unread);
    });
  });
  socket.on('disconnect', () => setState('reconnecting'));
  socket.on('hello', (h) => { $('worker').textContent = `${h.instance} (pid ${h.pid})`; });

  socket.on('dm', (m) => {
    addMessage(m);
    if (m.from === peer) hideTyping();
  });
  socket.on('unread', ({ count }) => setUnread(count));
  socket.on('typing', ({ from }) => {
    if (from !== peer) return;
    $('typing').textContent = `${from} is typing…`;
    $('typing').hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, 3000);
  });
  socket.on('activity', (a) => {
    addActivity(a);
    toast(`${a.from}: ${a.text}`);
  });
}

function setState(state) {
  $('state').dataset.state = state;
  $('state').textContent = state;
  if (state !== 'connected') $('transport').textContent = '–';
}

function showTransport() {
  $('transport').textContent = socket.io.engine?.transport?.name ?? '–';
}

// --- the conversation -----------------------------------------------------------------------
function addMessage(m) {
  if (m.seq > lastSeq) lastSeq = m.seq;
  if (shown.has(m.id)) return;
  if (m.from !== peer && m.from !== me) return; // other conversations: only the badge counts them
  shown.add(m.id);
  const li = document.createElement('li');
  li.className = m.from === me ? 'mine' : 'theirs';
  li.dataset.id = m.id;
  li.dataset.from = m.from;
  li.dataset.ts = m.ts;
  li.textContent = m.text;
  const time = document.createElement('small');
  time.textContent = new Date(m.ts).toLocaleTimeString();
  li.append(time);
  $('messages').append(li);
  li.scrollIntoView({ block: 'nearest' });
}

$('compose').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text) return;
  $('text').value = '';
  const m = { id: `${me}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`, to: peer, text, ts: Date.now() };
  addMessage({ ...m, from: me });
  socket.emit('dm', m, (err) => {
    if (err) document.querySelector(`li[data-id="${m.id}"]`)?.classList.add('failed');
  });
});

$('text').addEventListener('input', () => {
  if (Date.now() - lastTypingSent < 1000) return; // at most one typing event a second
  lastTypingSent = Date.now();
  socket.volatile.emit('typing', { to: peer });
});

function hideTyping() {
  clearTimeout(typingTimer);
  $('typing').hidden = true;
}

// --- the unread badge: messages to me since I last clicked it (kept in Redis by the server) ------
function setUnread(count) {
  $('unread').textContent = count;
  $('unread').hidden = !(count > 0);
}

$('unread').addEventListener('click', () => {
  socket.emit('read', (err) => { if (!err) setUnread(0); });
});

// --- the activity stream and its toast ----------------------------------------------------------
function addActivity(a) {
  const li = document.createElement('li');
  li.textContent = `${a.from}: ${a.text}`;
  const time = document.createElement('small');
  time.textContent = new Date(a.ts).toLocaleTimeString();
  li.append(time);
  $('stream').prepend(li);
}

function toast(text) {
  $('toast').textContent = text;
  $('toast').hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { $('toast').hidden = true; }, 4000);
}

$('post').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('activity-text').value.trim();
  if (!text) return;
  $('activity-text').value = '';
  const a = { text, ts: Date.now() };
  addActivity({ ...a, from: me });
  socket.emit('activity', a, () => {});
});
