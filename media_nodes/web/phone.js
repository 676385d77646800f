// Parley softphone: WebRTC media to the media node, signalling and call metadata over one WebSocket.
// Query parameters: token (session token for the signalling socket), agent (preselected agent),
// raw=1 (no echo cancellation / noise suppression / gain control: faithful audio for tests).
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const el = (id) => document.getElementById(id);
  const ui = {
    form: el("dial"), agent: el("agent"), call: el("call"), hangup: el("hangup"), mute: el("mute"),
    status: el("status"), error: el("error"), level: el("level"), activity: el("activity"),
    transcript: el("transcript"), latency: el("latency").tBodies[0], outcome: el("outcome"),
    remote: el("remote"),
  };
  // What happened on this page, for people debugging and for automated tests.
  const state = {
    phase: "idle", callId: null, lines: [], latencies: [], errors: [], ended: null,
    disposition: null, audioEnergy: 0, audioSeconds: 0, packetsReceived: 0, muted: false,
  };
  window.parleyPhone = state;

  let ws = null, pc = null, mic = null, statsTimer = null;

  const setStatus = (text, phase) => {
    ui.status.textContent = text;
    if (phase) state.phase = phase;
  };
  const showError = (text) => {
    state.errors.push(text);
    ui.error.textContent = text;
    ui.error.hidden = false;
  };
  const setCallControls = (inCall) => {
    ui.call.disabled = inCall;
    ui.agent.disabled = inCall;
    ui.hangup.disabled = !inCall;
    ui.mute.disabled = !inCall;
  };

  async function loadAgents() {
    const preset = params.get("agent");
    try {
      const response = await fetch("/phone/agents");
      const body = await response.json();
      ui.agent.replaceChildren();
      for (const agent of body.agents) {
        const option = new Option(`${agent.name} (${agent.id})`, agent.id);
        option.selected = agent.id === (preset || body.default);
        ui.agent.add(option);
      }
      if (preset && !body.agents.some((a) => a.id === preset)) ui.agent.add(new Option(preset, preset, true, true));
    } catch (err) {
      ui.agent.replaceChildren(new Option(preset || "default agent", preset || ""));
    }
    if (params.get("token")) {
      ui.agent.disabled = true; // the token names the agent
      ui.agent.title = "The session token chooses the agent";
    }
  }

  function addLine(role, turn, text, extra = "") {
    state.lines.push({ role, turn, text, interrupted: Boolean(extra) });
    const item = document.createElement("li");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "caller" ? "You: " : "Agent: ";
    item.append(who, document.createTextNode(text));
    if (extra) {
      const note = document.createElement("span");
      note.className = "interrupted";
      note.textContent = ` (${extra})`;
      item.append(note);
    }
    ui.transcript.append(item);
  }

  function addLatency(event) {
    state.latencies.push(event);
    const ms = (value) => (value === null || value === undefined ? "–" : `${Math.round(value)} ms`);
    const row = ui.latency.insertRow();
    for (const value of [String(event.turn_index), ms(event.voice_to_voice_ms), ms(event.endpoint_ms),
      ms(event.asr_ms), ms(event.dialogue_first_text_ms), ms(event.tts_first_audio_ms)]) {
      row.insertCell().textContent = value;
    }
  }

  function onMessage(message) {
    switch (message.type) {
      case "turn.user": addLine("caller", message.turn_index, message.text); break;
      case "turn.agent":
        addLine("agent", message.turn_index, message.text, message.interrupted ? "interrupted" : "");
        break;
      case "latency.measured": addLatency(message); break;
      case "agent.activity": ui.activity.textContent = `Agent is ${message.activity}`; break;
      case "disposition.set":
        state.disposition = message.disposition;
        ui.outcome.hidden = false;
        ui.outcome.textContent = `Outcome: ${message.disposition}${message.summary ? ` – ${message.summary}` : ""}`;
        break;
      case "ended":
        state.ended = message.reason;
        if (message.disposition) state.disposition = message.disposition;
        finish(`Call ended (${message.reason.replaceAll("_", " ")})`);
        break;
      case "error": showError(`${message.message} [${message.code}]`); break;
      default: break; // other call events (intents, slots, ...) are not shown
    }
  }

  const gatheringComplete = (peer, timeoutMs) => new Promise((resolve) => {
    if (peer.iceGatheringState === "complete") return resolve();
    const done = () => { if (peer.iceGatheringState === "complete") resolve(); };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs); // send what we have; the node still finds a pair
  });

  async function pollStats() {
    if (!pc) return;
    const stats = await pc.getStats();
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "audio") {
        state.audioEnergy = report.totalAudioEnergy || 0;
        state.audioSeconds = report.totalSamplesDuration || 0;
        state.packetsReceived = report.packetsReceived || 0;
        ui.level.value = Math.min(1, (report.audioLevel || 0) * 4);
      }
    });
  }

  function openSocket() {
    const url = new URL("/webrtc/signal", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (params.get("token")) url.searchParams.set("token", params.get("token"));
    return new WebSocket(url);
  }

  async function call(event) {
    event.preventDefault();
    ui.error.hidden = true;
    ui.transcript.replaceChildren();
    ui.latency.replaceChildren();
    ui.outcome.hidden = true;
    Object.assign(state, { lines: [], latencies: [], errors: [], ended: null, disposition: null, callId: null });
    setCallControls(true);
    setStatus("Connecting…", "connecting");
    const raw = params.get("raw") === "1";
    try {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: !raw, noiseSuppression: !raw, autoGainControl: !raw },
      });
    } catch (err) {
      showError(`Microphone not available: ${err.message}`);
      return finish("Idle");
    }
    ws = openSocket();
    ws.onmessage = async (msg) => {
      let message;
      try { message = JSON.parse(msg.data); } catch { return; }
      if (message.type === "hello") {
        try { await negotiate(message.ice_servers || []); } catch (err) {
          showError(`Could not start the call: ${err.message}`);
          hangUp();
        }
      } else if (message.type === "answer") {
        state.callId = message.call_id;
        await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
        setStatus("Ringing…", "ringing");
      } else {
        onMessage(message);
      }
    };
    ws.onclose = () => { if (state.phase !== "idle") finish(state.ended ? ui.status.textContent : "Disconnected"); };
  }

  async function negotiate(iceServers) {
    pc = new RTCPeerConnection({ iceServers });
    for (const track of mic.getAudioTracks()) pc.addTrack(track, mic);
    pc.ontrack = (e) => {
      ui.remote.srcObject = e.streams[0] || new MediaStream([e.track]);
      ui.remote.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc && pc.connectionState === "connected") setStatus("In call", "in-call");
      if (pc && pc.connectionState === "failed") showError("The media connection failed");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, 3000); // the node takes one complete offer, not trickled ICE
    ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, agent_id: ui.agent.value || undefined }));
    statsTimer = setInterval(pollStats, 250);
  }

  function hangUp() {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "hangup" }));
      setStatus("Hanging up…");
    } else {
      finish("Idle");
    }
  }

  function toggleMute() {
    if (!mic) return;
    const muted = ui.mute.getAttribute("aria-pressed") !== "true";
    for (const track of mic.getAudioTracks()) track.enabled = !muted;
    state.muted = muted;
    ui.mute.setAttribute("aria-pressed", String(muted));
    ui.mute.textContent = muted ? "Unmute" : "Mute";
  }

  function finish(text) {
    if (statsTimer) { clearInterval(statsTimer); statsTimer = null; }
    if (pc) { pollStats().finally(() => {}); }
    const peer = pc; pc = null;
    if (peer) setTimeout(() => peer.close(), 300); // keep the final stats readable a moment
    if (mic) { for (const track of mic.getTracks()) track.stop(); mic = null; }
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
    ws = null;
    state.muted = false;
    ui.level.value = 0;
    ui.activity.textContent = "";
    ui.mute.setAttribute("aria-pressed", "false");
    ui.mute.textContent = "Mute";
    setCallControls(false);
    setStatus(text, "idle");
  }

  ui.form.addEventListener("submit", call);
  ui.hangup.addEventListener("click", hangUp);
  ui.mute.addEventListener("click", toggleMute);
  loadAgents();
})();
