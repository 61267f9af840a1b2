// The review page: the production's lanes and lines, the render, edits written back, live events.
"use strict";

const COLOURS = ["#ffffff", "#ffe066", "#7fdbff", "#ff9f80", "#b8f28c", "#f5a3ff", "#ffc04d", "#9fb8ff"];
let state = null;
const EPISODE = new URLSearchParams(location.search).get("episode");

// every request names the episode when the page reviews a batch
function api(path) {
  return EPISODE ? `${path}${path.includes("?") ? "&" : "?"}episode=${encodeURIComponent(EPISODE)}` : path;
}

async function load() {
  const response = await fetch(api("api/state"));
  state = await response.json();
  document.getElementById("title").textContent = `talkstudio review: ${state.script}`;
  drawEpisodes();
  drawVideo();
  drawLanes();
  drawScript();
  drawCast();
  drawChunks();
  setStatus(state.rendering ? "rendering" : state.video ? "rendered" : "not rendered yet");
}

function drawEpisodes() {
  const choice = document.getElementById("episodes");
  if (!state.episodes || choice.options.length) return;
  choice.hidden = false;
  for (const name of state.episodes) choice.add(new Option(name, name, false, name === (EPISODE || state.episodes[0])));
  choice.addEventListener("change", () => { location.search = `?episode=${encodeURIComponent(choice.value)}`; });
}

function setStatus(text) { document.getElementById("status").textContent = text; }

function log(text) {
  const box = document.getElementById("log");
  box.textContent += text + "\n";
  box.scrollTop = box.scrollHeight;
}

function drawVideo() {
  const video = document.getElementById("video");
  video.innerHTML = "";
  if (!state.video) return;
  const stamp = Date.now();
  video.src = api(`media/video.mp4?v=${stamp}`);
  const track = document.createElement("track");
  Object.assign(track, { kind: "captions", src: api(`media/subtitles.vtt?v=${stamp}`), srclang: "en", default: true });
  video.appendChild(track);
}

function drawLanes() {
  const lanes = document.getElementById("lanes");
  lanes.innerHTML = "";
  if (!state.cues) return;
  const duration = state.cues.duration;
  const colour = {};
  state.cues.speakers.forEach((s, i) => { colour[s.id] = COLOURS[i % COLOURS.length]; });
  for (const speaker of state.cues.speakers) {
    const lane = document.createElement("div");
    lane.className = "lane";
    lane.dataset.speaker = speaker.id;
    lane.innerHTML = `<canvas class="wave"></canvas><span class="lane-name"></span>`;
    lane.querySelector(".lane-name").textContent = speaker.name;
    drawWave(lane.querySelector("canvas"), speaker.id);
    for (const scene of state.cues.scenes) {
      const mark = document.createElement("div");
      mark.className = "scene-mark";
      mark.style.left = `${100 * scene.start / duration}%`;
      lane.appendChild(mark);
    }
    for (const cue of state.cues.cues.filter(c => c.speaker === speaker.id)) {
      const block = document.createElement("div");
      block.className = "cue" + (cue.offscreen ? " offscreen" : "");
      block.style.left = `${100 * cue.start / duration}%`;
      block.style.width = `${100 * (cue.end - cue.start) / duration}%`;
      block.style.background = colour[speaker.id];
      block.textContent = cue.text;
      block.title = `${speaker.name}: ${cue.text} (${cue.start.toFixed(2)}-${cue.end.toFixed(2)} s)`;
      block.dataset.start = cue.start;
      block.addEventListener("click", () => { const v = document.getElementById("video"); v.currentTime = cue.start; v.play(); });
      lane.appendChild(block);
    }
    lanes.appendChild(lane);
  }
}

function drawCast() {
  const box = document.getElementById("cast");
  box.innerHTML = "";
  if (state.read_only) return;
  for (const [id, character] of Object.entries(state.cast)) {
    const row = document.createElement("div");
    row.className = "voice";
    row.dataset.cast = id;
    const name = document.createElement("span");
    name.textContent = character.name;
    const voiceId = input("id", character.voice.id ?? "", "voice id");
    const rate = input("rate", character.voice.rate, "rate");
    const pitch = input("pitch", character.voice.pitch, "pitch");
    const save = document.createElement("button");
    save.type = "button";
    save.textContent = "Save";
    const problems = document.createElement("div");
    problems.className = "problems";
    save.addEventListener("click", () => saveVoice(id, character.voice, { id: voiceId, rate, pitch }, problems));
    row.append(name, voiceId, rate, pitch, save, problems);
    box.appendChild(row);
  }
}

async function saveVoice(id, voice, fields, problems) {
  const changes = {};
  if (fields.id.value !== String(voice.id ?? "")) changes.id = fields.id.value || null;
  for (const name of ["rate", "pitch"]) {
    if (fields[name].value !== String(voice[name])) changes[name] = Number(fields[name].value);
  }
  if (!Object.keys(changes).length) return;
  const response = await fetch(api("api/voice"), {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ cast: id, changes, version: state.version }),
  });
  const answer = await response.json();
  if (!response.ok) { problems.textContent = answer.problems.join("\n"); return; }
  problems.textContent = "";
  state.version = answer.version;
  Object.assign(voice, changes);
  const chunks = await drawChunks();
  log(`will render ${chunks.filter(c => !c.cached).length} of ${chunks.length} chunks`);
  await fetch(api("api/render"), { method: "POST" });
}

async function chunkPlan() {
  const response = await fetch(api("api/chunks"));
  return response.ok ? response.json() : [];
}

async function drawChunks() {
  const box = document.getElementById("chunks");
  const chunks = await chunkPlan();
  box.innerHTML = "";
  for (const chunk of chunks) {
    const cell = document.createElement("figure");
    cell.className = "chunk" + (chunk.cached ? "" : " stale");
    cell.dataset.cached = chunk.cached;
    const picture = chunk.cached ? document.createElement("img") : document.createElement("div");
    if (chunk.cached) { picture.src = api(`media/chunk-${chunk.key}.jpg`); picture.alt = `${chunk.scene} ${chunk.index + 1}`; }
    else picture.className = "empty";
    const caption = document.createElement("figcaption");
    const cost = chunk.seconds ? `, ${chunk.seconds} s to make` : "";
    caption.textContent = `${chunk.scene} #${chunk.index + 1} at ${chunk.start.toFixed(1)} s: ` +
      `${chunk.cached ? "cached" : "to render"}${cost}`;
    cell.append(picture, caption);
    box.appendChild(cell);
  }
  box.dataset.count = String(chunks.length);
  return chunks;
}

async function drawWave(canvas, speaker) {
  const peaks = await (await fetch(api(`api/peaks/${encodeURIComponent(speaker)}`))).json();
  canvas.width = peaks.length;
  canvas.height = 40;
  const pen = canvas.getContext("2d");
  pen.fillStyle = "#4b5568";
  peaks.forEach((peak, x) => { const h = Math.max(1, peak * 40); pen.fillRect(x, 20 - h / 2, 1, h); });
  canvas.dataset.drawn = String(peaks.length);
}

function drawScript() {
  const box = document.getElementById("script");
  box.innerHTML = "";
  for (const problem of state.problems) log(problem);
  const speakers = Object.keys(state.cast);
  state.scenes.forEach((scene, s) => {
    const section = document.createElement("div");
    section.className = "scene";
    section.innerHTML = `<h2></h2>`;
    section.firstChild.textContent = scene.id;
    scene.lines.forEach((line, l) => section.appendChild(state.read_only ? lineText(line) : lineEditor(line, s, l, speakers)));
    box.appendChild(section);
  });
}

function lineText(line) {  // a recorded episode: its transcript, as rendered
  const row = document.createElement("div");
  row.className = "line read-only";
  row.textContent = `${state.cast[line.speaker]?.name ?? line.speaker}: ${line.text}`;
  return row;
}

function lineEditor(line, s, l, speakers) {
  const row = document.createElement("div");
  row.className = "line";
  row.dataset.scene = s;
  row.dataset.line = l;
  const who = document.createElement("select");
  who.dataset.field = "speaker";
  for (const id of speakers) who.add(new Option(state.cast[id].name, id, false, id === line.speaker));
  const text = input("text", line.text);
  const pause = input("pause", line.pause ?? "", "pause s");
  const overlap = input("overlap", line.overlap ?? "", "overlap");
  const save = document.createElement("button");
  save.type = "button";
  save.textContent = "Save";
  const hear = document.createElement("button");
  hear.type = "button";
  hear.textContent = "Hear";
  hear.title = "say this line with the voice below before keeping it";
  const voice = input("voice", "", "voice id, e.g. dan");
  const delivery = input("delivery", "", "delivery, e.g. whispering");
  const problems = document.createElement("div");
  problems.className = "problems";
  for (const field of [who, text, pause, overlap]) field.addEventListener("input", () => row.classList.add("changed"));
  save.addEventListener("click", () => saveLine(row, line, { who, text, pause, overlap, delivery }, problems));
  hear.addEventListener("click", () => audition(who.value, text.value, voice.value, delivery.value, problems));
  row.append(who, text, pause, overlap, save, voice, delivery, hear, problems);
  return row;
}

function input(field, value, placeholder = "") {
  const element = document.createElement("input");
  element.dataset.field = field;
  element.value = value;
  element.placeholder = placeholder;
  return element;
}

async function saveLine(row, line, fields, problems) {
  const changes = {};
  if (fields.who.value !== line.speaker) changes.speaker = fields.who.value;
  if (fields.text.value !== line.text) changes.text = fields.text.value;
  for (const name of ["pause", "overlap"]) {
    const value = fields[name].value.trim();
    const before = line[name] ?? "";
    if (value !== String(before)) changes[name] = value === "" ? null : (value.endsWith("%") ? value : Number(value));
  }
  if (fields.delivery.value.trim()) changes.delivery = fields.delivery.value.trim();  // words, as in the YAML
  if (!Object.keys(changes).length) return;
  const response = await fetch(api("api/line"), {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ scene: +row.dataset.scene, line: +row.dataset.line, changes, version: state.version }),
  });
  const answer = await response.json();
  if (!response.ok) { problems.textContent = answer.problems.join("\n"); return; }
  problems.textContent = "";
  row.classList.remove("changed");
  state.version = answer.version;
  Object.assign(line, changes);
  const chunks = await drawChunks();  // what the edit makes stale, before anything starts
  const stale = chunks.filter(c => !c.cached).length;
  log(`will render ${stale} of ${chunks.length} chunks`);
  await fetch(api("api/render"), { method: "POST" });
}

async function audition(speaker, text, voiceId, delivery, problems) {
  const response = await fetch(api("api/audition"), {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ speaker, text, voice: voiceId ? { id: voiceId } : {}, delivery: delivery || null }),
  });
  const answer = await response.json();
  if (!response.ok) { problems.textContent = answer.problems.join("\n"); return; }
  problems.textContent = "";
  const player = new Audio(api(`${answer.sample}?v=${Date.now()}`));
  document.body.dataset.auditions = String(+(document.body.dataset.auditions || 0) + 1);
  player.play().catch(() => {});
}

function followEvents() {
  const source = new EventSource(api(`api/events?after=${state ? state.events : 0}`));
  source.onmessage = async (message) => {
    const event = JSON.parse(message.data);
    if (event.kind === "task") setStatus(`${event.task}: ${event.done}/${event.total}`);
    else if (event.kind === "render finished") {
      log(`rendered ${event.rendered} of ${event.chunks} chunks${event.up_to_date ? " (up to date)" : ""}`);
      document.body.dataset.renders = String(+(document.body.dataset.renders || 0) + 1);
      await load();
    } else if (event.kind === "render failed") { log(`render failed: ${event.error}`); setStatus("render failed"); }
    else if (event.kind === "render queued") { setStatus("rendering; another render queued"); log("queued: renders after the one running"); }
    else if (event.kind === "render started") {
      setStatus("rendering");
      for (const cell of document.querySelectorAll(".chunk.stale figcaption")) cell.textContent += " (rendering)";
    }
    else if (event.message) log(event.message);
    else if (event.kind === "edited") log(`line ${event.line + 1} of scene ${event.scene + 1} written`);
    else if (event.kind === "voice edited") log(`${event.cast}'s voice written`);
  };
}

document.getElementById("render").addEventListener("click", () => fetch(api("api/render"), { method: "POST" }));
document.getElementById("video").addEventListener("timeupdate", () => {
  if (!state || !state.cues) return;
  const v = document.getElementById("video");
  document.getElementById("playhead").style.left = `${100 * v.currentTime / state.cues.duration}%`;
});
load().then(followEvents);
