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
};
window.app = app;

const $ = (id) => document.getElementById(id);

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
      return setCallState(IN_CALL);
    case 'iceCandidate': return addRemoteCandidate(message.candidate);
    case 'stopCommunication':
      showError(message.message || 'The call ended');
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
  const message = { id: 'register', name };
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
  // Fresh credentials before the old ones expire; a running call keeps its relays.
  if (app.pc) {
    try {
      app.pc.setConfiguration(configuration);
    } catch (e) {
      log('Could not apply refreshed credentials: ' + e, 'err');
    }
  }
  log('TURN credentials refreshed', 'in');
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
}

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
  app.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  $('videoInput').srcObject = app.localStream;
  const pc = new RTCPeerConnection(app.iceConfiguration || {});
  app.pc = pc;
  app.localStream.getTracks().forEach((track) => pc.addTrack(track, app.localStream));
  pc.onicecandidate = (event) => {
    if (event.candidate) send({ id: 'onIceCandidate', candidate: event.candidate.toJSON() });
  };
  pc.ontrack = (event) => { $('videoOutput').srcObject = event.streams[0]; };
  pc.onconnectionstatechange = () => {
    setStatus('Media: ' + pc.connectionState);
    if (pc.connectionState === 'failed') showError('The media connection failed (check the TURN server)');
  };
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
    log('Bad remote candidate: ' + e, 'err');
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
  $('incoming').hidden = true;
  app.incoming = null;
  app.pendingCandidates = [];
  if (app.pc) { app.pc.close(); app.pc = null; }
  if (app.localStream) { app.localStream.getTracks().forEach((t) => t.stop()); app.localStream = null; }
  $('videoInput').srcObject = null;
  $('videoOutput').srcObject = null;
  stopStats();
  setCallState(NO_CALL);
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
  app.statsTimer = setInterval(updateStats, 1000);
}

function stopStats() {
  clearInterval(app.statsTimer);
  app.statsTimer = null;
  app.lastBytes = null;
  ['statPath', 'statBitrate', 'statRtt'].forEach((id) => { $(id).textContent = '–'; });
}

async function updateStats() {
  if (!app.pc) return;
  const report = await app.pc.getStats();
  let pair = null, inbound = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
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

/// SDPs are long and say little to a person: show their size instead.
function abbreviate(message) {
  return JSON.stringify(message, (key, value) =>
    (key === 'sdpOffer' || key === 'sdpAnswer') && typeof value === 'string' ? '<SDP ' + value.length + ' bytes>' : value);
}

window.addEventListener('load', () => {
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
