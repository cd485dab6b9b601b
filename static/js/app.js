// The browser client of the one-to-one call: the STUNner tutorial's page, done properly.
// Speaks the tutorial's JSON protocol on /one2one; media flows peer to peer through TURN.
'use strict';

const NOT_REGISTERED = 'not registered', REGISTERING = 'registering', REGISTERED = 'registered';
const NO_CALL = 'No call', CALLING = 'Calling…', RINGING = 'Ringing…', IN_CALL = 'In call';

const app = {
  ws: null,
  registerState: NOT_REGISTERED,
  callState: NO_CALL,
  name: null,
  peer: null,
  iceConfiguration: null,
  pc: null,
  localStream: null,
  incoming: null,          // the incomingCall message awaiting an answer
  pendingCandidates: [],   // remote candidates that arrived before the remote description
  statsTimer: null,
  lastBytes: null,
  callId: null,            // the call this page is in, as the server names it
  attempts: 0,             // reconnection attempts since the last success
  reconnectNow: false,     // the server asked us to reconnect: no backoff
  // Renegotiation (both pages speak it): { polite } as the server assigned it, or null.
  negotiation: null,
  makingOffer: false,      // perfect negotiation: our own offer is being made
  ignoreOffer: false,      // …and a colliding one from the impolite side was ignored
  restart: null,           // the ICE restart under way: { cause, started }
  restarts: 0,             // ICE restarts this page made
  disconnectedTimer: null, // media disconnected: restart if it does not come back
  lastProgress: null,      // when media last arrived (set once it has flowed at all)
};

/// How long media may stay `disconnected` before ICE is restarted, and how long a restart may
/// take before it counts as failed (and another may start).
const DISCONNECTED_GRACE_MS = 1000;
const RESTART_TIMEOUT_MS = 15000;
/// Media that stops arriving for this long counts as a failed path: ICE notices a dead relay
/// only after many seconds, the bytes received say so at once.
const STALL_MS = 1500;
/// How often the call's statistics are read (and a stall looked for).
const STATS_INTERVAL_MS = 500;
window.app = app;

const $ = (id) => document.getElementById(id);
const TITLE = document.title;

// === connection ===

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const ws = new WebSocket(scheme + location.host + '/one2one');
  app.ws = ws;
  ws.onopen = () => {
    app.attempts = 0;
    setStatus(app.pc ? 'Connected; rejoining the call…' : 'Connected');
    // After a reload or a network blip, take the name back with its resume token (and the
    // call, if this page still has it).
    const saved = savedRegistration();
    if (saved) {
      $('name').value = saved.name;
      register(saved.token);
    } else {
      setRegisterState(NOT_REGISTERED);
    }
  };
  ws.onmessage = (event) => onMessage(event.data);
  ws.onclose = (event) => {
    if (app.ws !== ws) return;
    log('Disconnected' + (event.reason ? ': ' + event.reason : ''), 'err');
    // The call's media flows peer to peer and does not need this socket: keep it, and rejoin
    // the call once reconnected.
    setStatus(app.pc ? 'Reconnecting… (the call goes on)' : 'Disconnected; reconnecting…');
    setRegisterState(NOT_REGISTERED);
    $('register').disabled = true;
    const delay = app.reconnectNow ? 0 : backoff();
    app.reconnectNow = false;
    setTimeout(connect, delay);
  };
}

/// Exponential backoff with jitter, so a gateway's browsers do not all come back at once.
function backoff() {
  const ceiling = Math.min(500 * 2 ** app.attempts, 10000);
  app.attempts += 1;
  return ceiling / 2 + Math.random() * ceiling / 2;
}

function savedRegistration() {
  try {
    return JSON.parse(sessionStorage.getItem('registration') || 'null');
  } catch (e) {
    return null;
  }
}

function send(message) {
  const text = JSON.stringify(message);
  log('Sending: ' + abbreviate(message), 'out');
  if (app.ws && app.ws.readyState === WebSocket.OPEN) app.ws.send(text);
}

function onMessage(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch (e) {
    log('Unreadable message from the server', 'err');
    return;
  }
  log('Received: ' + abbreviate(message), 'in');
  if (message.traceId) $('statTrace').textContent = message.traceId;
  switch (message.id) {
    case 'registerResponse': return onRegisterResponse(message);
    case 'incomingCall': return onIncomingCall(message);
    case 'callResponse': return onCallResponse(message);
    case 'startCommunication':
      app.callId = message.callId || app.callId;
      app.negotiation = message.negotiation || null;
      return setCallState(IN_CALL);
    case 'negotiate': return onNegotiate(message);
    case 'iceCandidate': return addRemoteCandidate(message.candidate);
    case 'stopCommunication':
      // A hang-up is how calls end, not an error; losing the peer or a timeout is worth a look.
      if (message.reason === 'hang_up' || !message.reason) showInfo((app.peer || 'The other side') + ' hung up');
      else showError(message.message || 'The call ended');
      return stop(true);
    case 'iceConfiguration': return onIceConfiguration(message.iceConfiguration);
    case 'error': return onError(message);
    case 'reconnect':
      // This gateway is going away: go elsewhere now rather than when the socket drops.
      app.reconnectNow = true;
      return app.ws.close();
    default: log('Unrecognized message ' + message.id, 'err');
  }
}

// === registration ===

function register(resumeToken) {
  const name = $('name').value.trim();
  if (!name) return showError('Type your name first');
  clearError();
  setRegisterState(REGISTERING);
  // `extensions`: this page speaks more than the tutorial's protocol (renegotiation).
  const message = { id: 'register', name, extensions: true };
  if (resumeToken) message.resumeToken = resumeToken;
  // Still in a call after a reconnect: rejoin it rather than end it.
  if (resumeToken && app.pc && app.callId) message.rejoin = app.callId;
  send(message);
}

/// Refusals that say nothing about the name itself: try again later, with the same token.
const TRANSIENT = ['unavailable', 'ice_config_unavailable', 'signaling_unavailable', 'rate_limited'];

function onRegisterResponse(message) {
  if (message.response === 'accepted') {
    app.name = $('name').value.trim();
    app.iceConfiguration = message.iceConfiguration;
    if (message.resumeToken) {
      sessionStorage.setItem('registration', JSON.stringify({ name: app.name, token: message.resumeToken }));
    }
    setRegisterState(REGISTERED);
    if (app.pc) {
      if (message.call && message.call.callId === app.callId) {
        log('Rejoined the call with ' + message.call.peer, 'in');
        setStatus('In call with ' + message.call.peer);
      } else {
        showInfo('The call ended while reconnecting');
        stop(true);
      }
    } else {
      $('peer').focus();
    }
    return;
  }
  const saved = savedRegistration();
  if (saved && TRANSIENT.includes(message.reason)) {
    // The server is busy or a dependency is away: keep the token and try again.
    log('Registration will be retried: ' + message.message, 'err');
    setTimeout(() => { if (app.registerState !== REGISTERED) register(saved.token); }, backoff());
    return;
  }
  sessionStorage.removeItem('registration');
  setRegisterState(NOT_REGISTERED);
  if (app.pc) stop(true);
  showError('Registration refused: ' + (message.message || 'unknown reason'));
}

function onError(message) {
  if (message.reason === 'replaced') {
    // Another page took this name with its token.
    sessionStorage.removeItem('registration');
    setRegisterState(NOT_REGISTERED);
    if (app.pc) stop(true);
  }
  showError(message.message + (message.reason ? ' (' + message.reason + ')' : ''));
}

function onIceConfiguration(configuration) {
  app.iceConfiguration = configuration;
  log('TURN credentials refreshed', 'in');
  if (!app.pc) return;
  try {
    app.pc.setConfiguration(configuration);
  } catch (e) {
    log('Could not apply refreshed credentials: ' + e, 'err');
    return;
  }
  // The relays of a running call keep the credentials they were allocated with, and the TURN
  // server refuses those once they expire: restart ICE now, so new relays carry the new ones.
  if (app.callState === IN_CALL) restartIce('credentials');
}

// === renegotiation (perfect negotiation, W3C) ===

/// Restarts ICE with the current configuration, when both pages can renegotiate.
async function restartIce(cause) {
  const pc = app.pc;
  if (!pc || !app.negotiation) return;
  if (app.restart && performance.now() - app.restart.started < RESTART_TIMEOUT_MS) return;
  if (app.restart) reportRestart('failed');
  app.restart = { cause, started: performance.now(), remoteUfrag: remoteUfrag(pc) };
  app.restarts += 1;
  app.lastProgress = null;
  setStatus('Reconnecting media…');
  log('Restarting ICE (' + cause + ')', 'out');
  try {
    app.makingOffer = true;
    pc.restartIce();
    await pc.setLocalDescription();
    send({ id: 'negotiate', description: pc.localDescription.toJSON() });
  } catch (e) {
    log('Could not restart ICE: ' + e, 'err');
  } finally {
    app.makingOffer = false;
  }
}

/// The peer's new description. When both sides offered at once, the polite side (the callee)
/// gives way and the impolite one ignores the other's offer.
async function onNegotiate(message) {
  const pc = app.pc;
  if (!pc || !app.negotiation || message.callId !== app.callId) return;
  const description = message.description;
  const collision = description.type === 'offer' && (app.makingOffer || pc.signalingState !== 'stable');
  app.ignoreOffer = !app.negotiation.polite && collision;
  if (app.ignoreOffer) {
    log('Ignoring a colliding offer (ours goes first)', 'in');
    return;
  }
  try {
    await pc.setRemoteDescription(description);
    if (description.type === 'offer') {
      await pc.setLocalDescription();
      send({ id: 'negotiate', description: pc.localDescription.toJSON() });
    }
  } catch (e) {
    log('Renegotiation failed: ' + e, 'err');
  }
}

/// Tells the server how the restart under way went (for metrics and the call's trace).
function reportRestart(outcome) {
  const restart = app.restart;
  if (!restart) return;
  app.restart = null;
  const durationMs = Math.round(performance.now() - restart.started);
  send({ id: 'iceRestarted', cause: restart.cause, outcome, durationMs });
  log('ICE restart ' + outcome + ' after ' + durationMs + ' ms', outcome === 'recovered' ? 'in' : 'err');
}

/// The ICE username fragment the peer's current description carries: a restart changes it.
function remoteUfrag(pc) {
  const description = pc.currentRemoteDescription;
  const found = description && /a=ice-ufrag:(\S+)/.exec(description.sdp);
  return found ? found[1] : null;
}

/// The restart under way is over once both sides have new ICE credentials in force and media
/// is connected over them. (ICE may stay `connected` throughout when the old path still works.)
function checkRestartSettled(pc) {
  const restart = app.restart;
  if (!restart || pc.signalingState !== 'stable') return;
  const connected = pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed';
  if (connected && remoteUfrag(pc) !== restart.remoteUfrag) {
    reportRestart('recovered');
    setStatus('In call with ' + app.peer);
  }
}

function onIceConnectionState(pc) {
  const state = pc.iceConnectionState;
  clearTimeout(app.disconnectedTimer);
  if (state === 'connected' || state === 'completed') {
    checkRestartSettled(pc);
  } else if (state === 'disconnected') {
    // Often back by itself within a second or two; if not, restart.
    app.disconnectedTimer = setTimeout(() => restartIce('failure'), DISCONNECTED_GRACE_MS);
  } else if (state === 'failed') {
    restartIce('failure');
  }
}

// === calls ===

async function call() {
  const peer = $('peer').value.trim();
  if (!peer) return showError('Type the name to call');
  clearError();
  app.peer = peer;
  setCallState(CALLING);
  try {
    await startPeerConnection();
    const offer = await app.pc.createOffer();
    await app.pc.setLocalDescription(offer);
    send({ id: 'call', from: app.name, to: peer, sdpOffer: offer.sdp });
  } catch (e) {
    showError('Could not start the call: ' + e.message);
    stop(true);
  }
}

function onIncomingCall(message) {
  if (app.callState !== NO_CALL) {
    // The server answers busy itself; this is for older servers.
    return send({ id: 'incomingCallResponse', from: message.from, callResponse: 'reject', message: 'bussy' });
  }
  app.incoming = message;
  app.peer = message.from;
  app.callId = message.callId;
  setCallState(RINGING);
  $('incomingFrom').textContent = message.from;
  $('incoming').hidden = false;
  $('accept').focus();
  announce(message.from + ' is calling');
}

/// An incoming call a user in another tab should notice: the tab's title says so until the
/// page is looked at, and a notification shows when the user allowed them.
function announce(text) {
  if (!document.hidden) return;
  document.title = '📞 ' + text;
  if ('Notification' in window && Notification.permission === 'granted') {
    try { new Notification(text); } catch (e) { /* some browsers allow them from workers only */ }
  }
}

document.addEventListener('visibilitychange', () => { if (!document.hidden) document.title = TITLE; });

async function accept() {
  const message = app.incoming;
  $('incoming').hidden = true;
  if (!message) return;
  app.incoming = null;
  try {
    await startPeerConnection();
    await app.pc.setRemoteDescription({ type: 'offer', sdp: message.sdpOffer });
    await flushCandidates();
    const answer = await app.pc.createAnswer();
    await app.pc.setLocalDescription(answer);
    send({ id: 'incomingCallResponse', from: message.from, callResponse: 'accept', sdpAnswer: answer.sdp });
  } catch (e) {
    showError('Could not answer: ' + e.message);
    send({ id: 'incomingCallResponse', from: message.from, callResponse: 'reject', message: 'error' });
    stop(true);
  }
}

function reject() {
  const message = app.incoming;
  $('incoming').hidden = true;
  app.incoming = null;
  if (message) send({ id: 'incomingCallResponse', from: message.from, callResponse: 'reject', message: 'user declined' });
  setCallState(NO_CALL);
}

async function onCallResponse(message) {
  if (message.response !== 'accepted') {
    showError('Call not accepted: ' + (message.message || 'unknown reason'));
    return stop(true);
  }
  app.callId = message.callId || app.callId;
  app.negotiation = message.negotiation || null;
  try {
    await app.pc.setRemoteDescription({ type: 'answer', sdp: message.sdpAnswer });
    await flushCandidates();
    setCallState(IN_CALL);
  } catch (e) {
    showError('Bad answer from the peer: ' + e.message);
    stop();
  }
}

async function startPeerConnection() {
  app.localStream = await navigator.mediaDevices.getUserMedia(mediaConstraints());
  listDevices();
  $('videoInput').srcObject = app.localStream;
  const pc = new RTCPeerConnection(app.iceConfiguration || {});
  app.pc = pc;
  app.localStream.getTracks().forEach((track) => pc.addTrack(track, app.localStream));
  pc.onicecandidate = (event) => {
    if (event.candidate) send({ id: 'onIceCandidate', candidate: event.candidate.toJSON() });
  };
  pc.ontrack = (event) => { $('videoOutput').srcObject = event.streams[0]; };
  pc.onconnectionstatechange = () => {
    if (app.pc !== pc) return; // a call that is over
    if (!app.restart) setStatus(pc.connectionState === 'connected' ? 'In call with ' + app.peer : 'Media: ' + pc.connectionState);
    if (pc.connectionState === 'failed' && !app.negotiation) showError('The media connection failed (check the TURN server)');
  };
  pc.oniceconnectionstatechange = () => onIceConnectionState(pc);
  pc.onsignalingstatechange = () => checkRestartSettled(pc);
  $('mute').disabled = false;
  $('camera').disabled = false;
  startStats();
}

async function addRemoteCandidate(candidate) {
  if (!app.pc || !app.pc.remoteDescription) {
    app.pendingCandidates.push(candidate);
    return;
  }
  try {
    await app.pc.addIceCandidate(candidate);
  } catch (e) {
    // Candidates of an offer this page ignored (a collision it won) do not apply.
    if (!app.ignoreOffer) log('Bad remote candidate: ' + e, 'err');
  }
}

async function flushCandidates() {
  const queued = app.pendingCandidates;
  app.pendingCandidates = [];
  for (const candidate of queued) await addRemoteCandidate(candidate);
}

function stop(remote) {
  if (!remote && app.callState !== NO_CALL) send({ id: 'stop' });
  app.callId = null;
  app.negotiation = null;
  app.restart = null;
  app.ignoreOffer = false;
  clearTimeout(app.disconnectedTimer);
  $('incoming').hidden = true;
  app.incoming = null;
  app.pendingCandidates = [];
  if (app.pc) { app.pc.close(); app.pc = null; }
  if (app.localStream) { app.localStream.getTracks().forEach((t) => t.stop()); app.localStream = null; }
  $('videoInput').srcObject = null;
  $('videoOutput').srcObject = null;
  stopStats();
  setCallState(NO_CALL);
  if (app.registerState === REGISTERED) setStatus('Registered as ' + app.name);
}

function toggleTrack(kind, button, offLabel, onLabel) {
  if (!app.localStream) return;
  const tracks = kind === 'audio' ? app.localStream.getAudioTracks() : app.localStream.getVideoTracks();
  const off = button.getAttribute('aria-pressed') !== 'true';
  tracks.forEach((t) => { t.enabled = !off; });
  button.setAttribute('aria-pressed', String(off));
  button.textContent = off ? onLabel : offLabel;
}

// === stats ===

function startStats() {
  stopStats();
  app.statsTimer = setInterval(updateStats, STATS_INTERVAL_MS);
}

function stopStats() {
  clearInterval(app.statsTimer);
  app.statsTimer = null;
  app.lastBytes = null;
  app.lastProgress = null;
  ['statPath', 'statBitrate', 'statRtt'].forEach((id) => { $(id).textContent = '–'; });
}

async function updateStats() {
  if (!app.pc) return;
  const report = await app.pc.getStats();
  let pair = null, inbound = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    // Firefox has no transport stats: its selected pair says so itself.
    if (s.type === 'candidate-pair' && s.selected && !pair) pair = s;
    if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
  });
  if (pair) {
    const local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
    const via = local && local.candidateType === 'relay' ? 'relay via ' + (local.relayProtocol || local.protocol) : (local ? local.candidateType : '?');
    $('statPath').textContent = via + ' → ' + (remote ? remote.candidateType : '?');
    if (pair.currentRoundTripTime !== undefined) $('statRtt').textContent = Math.round(pair.currentRoundTripTime * 1000) + ' ms';
  }
  if (inbound) {
    const now = { bytes: inbound.bytesReceived, at: inbound.timestamp };
    if (app.lastBytes) {
      const kbps = (8 * (now.bytes - app.lastBytes.bytes)) / (now.at - app.lastBytes.at);
      $('statBitrate').textContent = Math.max(0, Math.round(kbps)) + ' kbit/s';
    }
    if (!app.lastBytes || now.bytes > app.lastBytes.bytes) {
      if (now.bytes > 0) app.lastProgress = performance.now();
    } else if (app.lastProgress !== null && app.callState === IN_CALL && !app.restart
               && performance.now() - app.lastProgress > STALL_MS) {
      restartIce('failure');
    }
    app.lastBytes = now;
  }
}

// === page state ===

function setRegisterState(state) {
  app.registerState = state;
  $('register').disabled = state !== NOT_REGISTERED;
  $('name').disabled = state !== NOT_REGISTERED;
  if (state === REGISTERED) setStatus('Registered as ' + app.name);
  setCallState(app.callState);
}

function setCallState(state) {
  app.callState = state;
  const registered = app.registerState === REGISTERED;
  $('call').disabled = !registered || state !== NO_CALL;
  $('terminate').disabled = state === NO_CALL || state === RINGING;
  $('callState').textContent = state === NO_CALL ? state : state + (app.peer ? ' (' + app.peer + ')' : '');
  if (state === NO_CALL) {
    $('mute').disabled = true;
    $('camera').disabled = true;
    stopTimer();
  } else if (state === IN_CALL && !app.timer) {
    startTimer();
  }
}

function setStatus(text) { $('status').textContent = text; }

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = false;
  log(text, 'err');
}

function clearError() { $('error').hidden = true; }

function showInfo(text) {
  log(text, 'in');
  setStatus(text);
}

function log(text, kind) {
  const line = document.createElement('div');
  line.className = kind || '';
  line.textContent = new Date().toISOString().slice(11, 23) + ' ' + text;
  const box = $('console');
  box.appendChild(line);
  while (box.childNodes.length > 500) box.removeChild(box.firstChild);
  box.scrollTop = box.scrollHeight;
}

/// SDPs are long and say little to a person: their size instead. Credentials and the resume
/// token are secrets: never shown.
function abbreviate(message) {
  return JSON.stringify(message, (key, value) => {
    if (typeof value !== 'string') return value;
    if (key === 'sdpOffer' || key === 'sdpAnswer' || key === 'sdp') return '<SDP ' + value.length + ' bytes>';
    if (key === 'credential' || key === 'username' || key === 'resumeToken') return '<hidden>';
    return value;
  });
}

// === devices, call timer, diagnostics ===

/// The camera and microphone chosen in the pickers (the defaults until one is chosen).
function mediaConstraints() {
  const pick = (id) => ($(id).value ? { deviceId: { exact: $(id).value } } : true);
  return { audio: pick('microphone'), video: pick('cameraSelect') };
}

/// Fills the device pickers (labels are known once the page may use the devices).
async function listDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [select, kind] of [['cameraSelect', 'videoinput'], ['microphone', 'audioinput']]) {
    const chosen = $(select).value;
    $(select).replaceChildren(new Option('Default', ''));
    devices.filter((d) => d.kind === kind).forEach((d, n) => {
      $(select).add(new Option(d.label || kind + ' ' + (n + 1), d.deviceId));
    });
    $(select).value = chosen;
  }
}

function startTimer() {
  stopTimer();
  const started = Date.now();
  const show = () => {
    const seconds = Math.floor((Date.now() - started) / 1000);
    $('timer').textContent = Math.floor(seconds / 60) + ':' + String(seconds % 60).padStart(2, '0');
  };
  show();
  app.timer = setInterval(show, 1000);
  $('timer').hidden = false;
}

function stopTimer() {
  clearInterval(app.timer);
  app.timer = null;
  $('timer').hidden = true;
}

/// What a bug report needs, on the clipboard: the call's trace id, the path and recent stats.
async function copyDiagnostics() {
  const text = [
    'trace id: ' + $('statTrace').textContent,
    'state: ' + app.registerState + ', ' + app.callState,
    'path: ' + $('statPath').textContent,
    'bitrate in: ' + $('statBitrate').textContent,
    'round trip: ' + $('statRtt').textContent,
    'ICE restarts: ' + app.restarts,
    'browser: ' + navigator.userAgent,
  ].join('\n');
  app.diagnostics = text;
  try {
    await navigator.clipboard.writeText(text);
    showInfo('Diagnostics copied');
  } catch (e) {
    showInfo('Diagnostics (copy them from the messages below)');
    log(text, 'out');
  }
}

window.addEventListener('load', () => {
  $('copy').addEventListener('click', copyDiagnostics);
  listDevices();
  $('register').addEventListener('click', () => register());
  $('name').addEventListener('keydown', (e) => { if (e.key === 'Enter') register(); });
  $('call').addEventListener('click', call);
  $('peer').addEventListener('keydown', (e) => { if (e.key === 'Enter' && !$('call').disabled) call(); });
  $('terminate').addEventListener('click', () => stop());
  $('accept').addEventListener('click', accept);
  $('reject').addEventListener('click', reject);
  $('mute').addEventListener('click', (e) => toggleTrack('audio', e.currentTarget, 'Mute', 'Unmute'));
  $('camera').addEventListener('click', (e) => toggleTrack('video', e.currentTarget, 'Camera off', 'Camera on'));
  setRegisterState(NOT_REGISTERED);
  $('register').disabled = true;
  connect();
  $('name').focus();
});
window.addEventListener('beforeunload', () => { if (app.ws) app.ws.close(); });
// A new network (Wi-Fi to cellular): the media path is gone with the old addresses.
window.addEventListener('online', () => restartIce('network'));
if (navigator.connection) navigator.connection.addEventListener('change', () => restartIce('network'));
