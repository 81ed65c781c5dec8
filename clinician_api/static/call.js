/* Vigil video call: the waiting room and the call, in plain WebRTC (no library, nothing from a CDN).

   Signalling follows docs/video.md (protocol version 1) over the app's WebSocket
   /consult/rooms/{room}/ws. The join token comes from the URL fragment (never sent to a server by
   the browser), is kept in this tab's sessionStorage (a reload rejoins) and removed from the
   address bar. Mesh: one RTCPeerConnection per other participant; whoever was in the call first
   sends the offer (on "peer-joined"), the newcomer answers. A dropped WebSocket is reopened with
   resume: true within the server's grace: the peer connections and their media carry on. */
(function () {
  "use strict";

  var FINAL_CLOSES = { 1000: "left", 4403: "refused", 4409: "replaced", 4410: "ended" };
  var ROLE_NAMES = { patient: "Patient", clinician: "Clinician", interpreter: "Interpreter", family: "Family member" };

  var room = document.body.getAttribute("data-room") || "";
  var el = function (id) { return document.getElementById(id); };
  var call = {
    ws: null, token: null, me: null, role: null, ice: [], peers: {}, local: null,
    joined: false, final: false, attempts: 0, pingTimer: null, statsTimer: null, iceTimer: null, names: {}
  };

  function setState(state, text) {
    el("call").setAttribute("data-state", state);
    el("call-state").textContent = text;
  }

  function readToken() {
    var key = "vigil.call." + room;
    var m = /(?:^|&)t=([^&]+)/.exec(window.location.hash.slice(1));
    if (m) {
      window.sessionStorage.setItem(key, decodeURIComponent(m[1]));
      window.history.replaceState(null, "", window.location.pathname);
    }
    return window.sessionStorage.getItem(key);
  }

  function nameOf(info) {
    if (!info) return "Someone";
    var name = ROLE_NAMES[info.role] || "Participant";
    if (info.label && info.role !== "patient") name += " (" + info.label + ")";
    return name;
  }

  function send(msg) {
    if (call.ws && call.ws.readyState === WebSocket.OPEN) call.ws.send(JSON.stringify(msg));
  }

  /* ---- media and peers ------------------------------------------------------------------- */

  function startMedia() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return Promise.resolve(new MediaStream());
    }
    return navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } })
      .catch(function () {
        el("media-error").textContent = "Your camera or microphone is not available: others will not see or hear you.";
        return new MediaStream();
      });
  }

  function tileFor(pid, info) {
    var fig = document.createElement("figure");
    fig.className = "tile remote";
    fig.setAttribute("data-peer", pid);
    fig.setAttribute("data-frames-decoded", "0");
    var video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    var cap = document.createElement("figcaption");
    cap.textContent = nameOf(info);
    var status = document.createElement("span");
    status.className = "peer-status";
    cap.appendChild(document.createTextNode(" "));
    cap.appendChild(status);
    fig.appendChild(video);
    fig.appendChild(cap);
    el("videos").appendChild(fig);
    return { fig: fig, video: video, status: status };
  }

  function closePeer(pid) {
    var p = call.peers[pid];
    if (!p) return;
    try { p.pc.close(); } catch (e) { /* already closed */ }
    if (p.tile.fig.parentNode) p.tile.fig.parentNode.removeChild(p.tile.fig);
    delete call.peers[pid];
  }

  function closeAll() {
    Object.keys(call.peers).forEach(closePeer);
  }

  function makePeer(info, offerer) {
    var pid = info.participant_id;
    closePeer(pid);
    call.names[pid] = info;
    var pc = new RTCPeerConnection({ iceServers: call.ice });
    var p = { id: pid, info: info, pc: pc, queue: [], offerer: offerer, tile: tileFor(pid, info) };
    call.peers[pid] = p;
    call.local.getTracks().forEach(function (t) { pc.addTrack(t, call.local); });
    pc.onicecandidate = function (e) {
      send({ type: "ice-candidate", to: pid, candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    pc.ontrack = function (e) {
      if (p.tile.video.srcObject !== e.streams[0]) p.tile.video.srcObject = e.streams[0] || new MediaStream([e.track]);
    };
    pc.onconnectionstatechange = function () {
      p.tile.fig.setAttribute("data-connection", pc.connectionState);
      if (pc.connectionState === "failed" && p.offerer) offer(p, true);
    };
    return p;
  }

  function offer(p, restart) {
    return p.pc.createOffer(restart ? { iceRestart: true } : undefined)
      .then(function (o) { return p.pc.setLocalDescription(o); })
      .then(function () { send({ type: "offer", to: p.id, sdp: p.pc.localDescription.sdp }); })
      .catch(function (e) { report("could not start the connection to " + nameOf(p.info), e); });
  }

  function flush(p) {
    var queued = p.queue;
    p.queue = [];
    queued.forEach(function (c) { p.pc.addIceCandidate(c).catch(function () { /* stale candidate */ }); });
  }

  function onOffer(msg) {
    var p = call.peers[msg.from];
    if (!p || p.pc.signalingState === "closed" || p.pc.signalingState === "have-local-offer") {
      p = makePeer(call.names[msg.from] || { participant_id: msg.from, role: "", label: null }, false);
    }
    p.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp })
      .then(function () { flush(p); return p.pc.createAnswer(); })
      .then(function (a) { return p.pc.setLocalDescription(a); })
      .then(function () { send({ type: "answer", to: p.id, sdp: p.pc.localDescription.sdp }); })
      .catch(function (e) { report("could not answer " + nameOf(p.info), e); });
  }

  function onAnswer(msg) {
    var p = call.peers[msg.from];
    if (!p) return;
    p.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp })
      .then(function () { flush(p); })
      .catch(function (e) { report("could not connect to " + nameOf(p.info), e); });
  }

  function onCandidate(msg) {
    var p = call.peers[msg.from];
    if (!p || !msg.candidate) return;
    if (p.pc.remoteDescription) {
      p.pc.addIceCandidate(msg.candidate).catch(function () { /* stale candidate */ });
    } else {
      p.queue.push(msg.candidate);
    }
  }

  /* Frames decoded per remote tile (what the tests and the "receiving video" mark read). */
  function pollStats() {
    Object.keys(call.peers).forEach(function (pid) {
      var p = call.peers[pid];
      p.pc.getStats().then(function (report) {
        var frames = 0;
        report.forEach(function (s) {
          if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded) frames += s.framesDecoded;
        });
        p.tile.fig.setAttribute("data-frames-decoded", String(frames));
        p.tile.status.textContent = frames > 0 ? "" : "connecting…";
      }).catch(function () { /* closed meanwhile */ });
    });
  }

  /* ---- the waiting room (clinicians admit) ------------------------------------------------ */

  function showWaiting(list) {
    var box = el("waiting-list");
    box.textContent = "";
    (list || []).forEach(function (w) {
      call.names[w.participant_id] = w;
      var li = document.createElement("li");
      li.setAttribute("data-participant", w.participant_id);
      li.appendChild(document.createTextNode(nameOf(w) + (w.connected ? " is waiting " : " (connection lost) ")));
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = "Admit";
      b.setAttribute("data-action", "admit");
      b.setAttribute("data-participant", w.participant_id);
      b.disabled = !w.connected;
      li.appendChild(b);
      box.appendChild(li);
    });
    el("admit").hidden = !(list && list.length);
  }

  /* ---- chat ------------------------------------------------------------------------------- */

  function onChat(msg) {
    var li = document.createElement("li");
    li.setAttribute("data-chat", msg.chat_id);
    var who = document.createElement("strong");
    who.textContent = (msg.from === call.me ? "You" : nameOf(call.names[msg.from])) + ": ";
    li.appendChild(who);
    li.appendChild(document.createTextNode(msg.text));
    el("chat-log").appendChild(li);
    el("chat-log").scrollTop = el("chat-log").scrollHeight;
  }

  /* ---- signalling ------------------------------------------------------------------------- */

  /* TURN credentials expire (username "<expiry>:<participant>"): ask for fresh ones 5 minutes
     before, so a long call keeps its relay (coturn refuses refreshing an expired allocation). */
  function scheduleIceRefresh() {
    window.clearTimeout(call.iceTimer);
    var expiries = call.ice.map(function (s) {
      var m = /^([0-9]+):/.exec(s.username || "");
      return m ? Number(m[1]) * 1000 : Infinity;
    });
    var soonest = Math.min.apply(null, expiries.concat([Infinity]));
    if (soonest === Infinity) return;
    var wait = Math.max(10000, soonest - Date.now() - 300000);
    call.iceTimer = window.setTimeout(function () { send({ type: "refresh-ice" }); }, wait);
  }

  function enterCall(peers, ice) {
    call.ice = ice || [];
    scheduleIceRefresh();
    (peers || []).forEach(function (p) { call.names[p.participant_id] = p; });
    el("waiting").hidden = true;
    el("in-call").hidden = false;
    el("end-call").hidden = call.role !== "clinician";
    setState("in-call", "You are in the call.");
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "joined":
        call.joined = true;
        call.attempts = 0;
        call.me = msg.participant_id;
        call.role = msg.role;
        if (!msg.resumed) closeAll();
        if (msg.state === "in-call") {
          enterCall(msg.peers, msg.ice_servers);
          if (msg.role === "clinician") showWaiting(msg.waiting);
        } else {
          closeAll();
          el("waiting").hidden = false;
          el("in-call").hidden = true;
          setState("waiting", "You are in the waiting room. Your clinician will let you in shortly.");
        }
        break;
      case "admitted":
        enterCall(msg.peers, msg.ice_servers);
        break;
      case "waiting-room":
        showWaiting(msg.waiting);
        break;
      case "peer-joined":
        makePeer(msg.peer, true);
        offer(call.peers[msg.peer.participant_id], false);
        break;
      case "peer-reconnecting":
        if (call.peers[msg.participant_id]) call.peers[msg.participant_id].tile.status.textContent = "reconnecting…";
        break;
      case "peer-reconnected":
        if (call.peers[msg.participant_id]) call.peers[msg.participant_id].tile.status.textContent = "";
        break;
      case "peer-left":
        closePeer(msg.participant_id);
        break;
      case "offer": onOffer(msg); break;
      case "answer": onAnswer(msg); break;
      case "ice-candidate": onCandidate(msg); break;
      case "chat": onChat(msg); break;
      case "ice-servers":
        call.ice = msg.ice_servers || [];
        scheduleIceRefresh();
        Object.keys(call.peers).forEach(function (pid) {
          var p = call.peers[pid];
          p.pc.setConfiguration({ iceServers: call.ice });
          if (p.offerer) offer(p, true);  // an ICE restart gathers relay candidates with the new credential
        });
        break;
      case "ended":
        finish("ended", "The call has ended.");
        break;
      case "error":
        if (msg.code === "join-refused") finish("refused", "This link cannot be used (" + msg.message + ").");
        else report("the server refused a message: " + msg.code);
        break;
      default:
        break;
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + window.location.host + "/consult/rooms/" + encodeURIComponent(room) + "/ws");
    call.ws = ws;
    ws.onopen = function () {
      send({ type: "join", v: 1, token: call.token, resume: call.joined });
    };
    ws.onmessage = function (e) {
      var msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      onMessage(msg);
    };
    ws.onclose = function (e) {
      if (call.ws !== ws || call.final) return;
      var why = FINAL_CLOSES[e.code];
      if (why === "refused") return finish("refused", "This link cannot be used to join.");
      if (why === "replaced") return finish("replaced", "You joined from another window; this one has stopped.");
      if (why === "ended") return finish("ended", "The call has ended.");
      if (why === "left") return finish("left", "You left the call.");
      call.attempts += 1;
      var delay = Math.min(5000, 500 * Math.pow(2, call.attempts - 1));
      setState("reconnecting", "Connection lost: reconnecting…");
      window.setTimeout(connect, delay);
    };
  }

  function finish(state, text) {
    call.final = true;
    closeAll();
    if (call.ws) { try { call.ws.close(1000); } catch (e) { /* closed */ } }
    if (call.local) call.local.getTracks().forEach(function (t) { t.stop(); });
    window.clearInterval(call.pingTimer);
    window.clearInterval(call.statsTimer);
    window.clearTimeout(call.iceTimer);
    el("in-call").hidden = true;
    el("waiting").hidden = true;
    setState(state, text);
  }

  function report(text, err) {
    el("call-error").textContent = "Problem: " + text + (err && err.name ? " (" + err.name + ")" : "");
  }

  /* ---- controls --------------------------------------------------------------------------- */

  document.addEventListener("click", function (event) {
    var b = event.target.closest("button[data-action]");
    if (!b) return;
    var action = b.getAttribute("data-action");
    if (action === "admit") {
      b.disabled = true;
      send({ type: "admit", participant_id: b.getAttribute("data-participant") });
    } else if (action === "leave") {
      send({ type: "leave" });
      finish("left", "You left the call.");
    } else if (action === "end-call") {
      send({ type: "end-call" });
    } else if (action === "mute" || action === "camera") {
      var kind = action === "mute" ? "audio" : "video";
      var tracks = call.local ? call.local.getTracks().filter(function (t) { return t.kind === kind; }) : [];
      var off = b.getAttribute("aria-pressed") !== "true";
      tracks.forEach(function (t) { t.enabled = !off; });
      b.setAttribute("aria-pressed", off ? "true" : "false");
    }
  });

  el("chat-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var input = el("chat-text");
    var text = input.value.trim();
    if (!text) return;
    send({ type: "chat", text: text });
    input.value = "";
  });

  /* A test and support hook: drop the signalling connection as a network blip would. */
  window.vigilCall = { blip: function () { if (call.ws) call.ws.close(4000, "blip"); } };

  function start() {
    call.token = readToken();
    if (!room || !call.token) {
      setState("refused", "This page needs the join link you were sent.");
      return;
    }
    startMedia().then(function (stream) {
      call.local = stream;
      el("local-video").srcObject = stream;
      call.pingTimer = window.setInterval(function () { send({ type: "ping" }); }, 20000);
      call.statsTimer = window.setInterval(pollStats, 250);
      connect();
    });
  }

  start();
})();
