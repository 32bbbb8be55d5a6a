// The explorer page: a Leaflet map of the store's grid, the layers the server lists, queries
// by upload, recording or species name, uncertainty layers, a colour bar, cell values on
// click, and downloads.
"use strict";

const state = { layers: new Map(), overlay: null, cell: null, current: null, map: null, recorder: null, recording: null };
const RECORD_SECONDS = 10; // the audio tower's clip length (longer clips are cut)
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(message) { $("status").textContent = message; }

function addLayer(layer) {
  if (state.layers.has(layer.id)) return;
  state.layers.set(layer.id, layer);
  const item = document.createElement("li");
  const label = document.createElement("label");
  const radio = document.createElement("input");
  radio.type = "radio";
  radio.name = "layer";
  radio.value = layer.id;
  radio.id = `layer-${layer.id}`;
  radio.addEventListener("change", () => showLayer(layer.id));
  label.append(radio, ` ${layer.title}`);
  item.append(label);
  $("layers").prepend(item);
}

function showLayer(id) {
  const layer = state.layers.get(id);
  state.current = id;
  $(`layer-${id}`).checked = true;
  if (state.overlay) state.overlay.remove();
  $("map").dataset.shown = "";
  state.overlay = L.imageOverlay(`api/layers/${id}/image.png`, layer.bounds, { opacity: 0.9 });
  state.overlay.on("load", () => { if (state.current === id) $("map").dataset.shown = id; });
  state.overlay.addTo(state.map);
  $("current").hidden = false;
  $("downloads").hidden = false;
  $("current-title").textContent = layer.title;
  $("current-description").textContent = layer.description;
  $("ramp").style.background = `linear-gradient(to right, ${layer.colours.join(", ")})`;
  $("ramp-min").textContent = layer.min.toPrecision(4);
  $("ramp-max").textContent = layer.max.toPrecision(4);
  $("ramp-units").textContent = layer.units;
  $("download-tif").href = `api/layers/${id}/download.tif`;
  $("download-png").href = `api/layers/${id}/download.png`;
  $("command").textContent = layer.command || "(the file given with --layer)";
}

async function query(request, what) {
  showError("");
  setStatus(`mapping ${what} ...`);
  const started = performance.now();
  try {
    const body = await api(request.url, request.options);
    const layers = body.layers || [body]; // an uncertainty layer may come with several bands
    layers.forEach(addLayer);
    showLayer(layers[0].id);
    setStatus(`${what}: mapped in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  } catch (error) {
    setStatus("");
    showError(error.message);
  }
}

function uploadFile(file) {
  if (!file) return;
  const mode = $("mode").value;
  const url = `api/query?filename=${encodeURIComponent(file.name)}&mode=${mode}`;
  query({ url, options: { method: "POST", body: file } }, file.name);
}

// A recording: the microphone's samples taken by an AudioWorklet (static/recorder.js) and
// written here into a 16-bit PCM WAV file, which the server reads without any codec.
async function record() {
  if (state.recorder) { state.recorder.stop(); return; }
  showError("");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (error) {
    showError(`no microphone: ${error.message}`);
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("static/recorder.js");
  const source = context.createMediaStreamSource(stream);
  const tap = new AudioWorkletNode(context, "pcm-tap");
  const blocks = [];
  tap.port.onmessage = (event) => blocks.push(event.data);
  source.connect(tap);
  tap.connect(context.destination); // silent: the tap writes no output
  const started = performance.now();
  const ticker = setInterval(() => {
    $("recording-status").textContent = `recording ${((performance.now() - started) / 1000).toFixed(1)} s`;
  }, 200);
  const timer = setTimeout(() => stop(), RECORD_SECONDS * 1000);
  async function stop() {
    state.recorder = null;
    clearTimeout(timer);
    clearInterval(ticker);
    source.disconnect();
    tap.disconnect();
    stream.getTracks().forEach((track) => track.stop());
    const rate = context.sampleRate;
    await context.close();
    $("record").textContent = "Record a sound";
    $("recording-status").textContent = "";
    if (!blocks.length) { showError("the recording is empty"); return; }
    const wav = wavFile(blocks, rate);
    state.recording = wav;
    const url = URL.createObjectURL(wav);
    $("recording-audio").src = url;
    $("recording-link").href = url;
    $("recording").hidden = false;
    uploadFile(new File([wav], "recording.wav", { type: "audio/wav" }));
  }
  state.recorder = { stop };
  $("record").textContent = "Stop and map";
}

function wavFile(blocks, rate) {
  const count = blocks.reduce((n, block) => n + block.length, 0);
  const view = new DataView(new ArrayBuffer(44 + 2 * count));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * count, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true); // mono, 16 bits
  text(36, "data"); view.setUint32(40, 2 * count, true);
  let at = 44;
  for (const block of blocks) {
    for (const x of block) { view.setInt16(at, Math.round(Math.max(-1, Math.min(1, x)) * 32767), true); at += 2; }
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

function uncertaintyControls(options) {
  for (const layer of options.layers) $("uncertainty-layer").append(new Option(layer, layer));
  for (const modality of options.context) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = modality;
    box.checked = true;
    label.append(box, ` ${modality} `);
    $("uncertainty-context").append(label);
  }
  $("uncertainty-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const context = [...$("uncertainty-context").querySelectorAll("input:checked")].map((b) => b.value);
    const layer = $("uncertainty-layer").value;
    const body = JSON.stringify({ layer, context });
    query({ url: "api/uncertainty", options: { method: "POST", headers: { "Content-Type": "application/json" }, body } },
      `${layer} of ${context.join("+") || "nothing"}`);
  });
}

async function showCell(event) {
  const { lat, lng } = event.latlng;
  try {
    const cell = await api(`api/cell?lon=${lng}&lat=${lat}`);
    if (state.cell) state.cell.remove();
    if (!cell.inside) {
      $("cell").textContent = `outside the grid (${lat.toFixed(4)}, ${lng.toFixed(4)})`;
      return;
    }
    state.cell = L.polygon(cell.corners, { color: "#d00", weight: 2, fill: false }).addTo(state.map);
    const rows = cell.values.map((v) =>
      `<tr><td>${escape(v.title)}</td><td><b>${v.value === null ? "no data" : v.value.toPrecision(5)}</b> ${escape(v.units)}</td></tr>`);
    $("cell").innerHTML =
      `<p>row ${cell.row}, column ${cell.col}<br>centre ${cell.lat.toFixed(4)}° N, ${cell.lon.toFixed(4)}° E` +
      `<br>${escape(cell.crs)}: x ${cell.x.toPrecision(8)}, y ${cell.y.toPrecision(8)}</p><table>${rows.join("")}</table>`;
  } catch (error) {
    showError(error.message);
  }
}

function escape(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

async function start() {
  const info = await api("api/info");
  $("grid-line").textContent = info.describe;
  $("note").textContent = info.note;
  $("note").hidden = !info.note;
  $("mode").value = info.mode;
  state.map = L.map("map", { zoomSnap: 0.25 });
  if (info.basemap) {
    L.tileLayer(info.basemap, { maxZoom: 18, attribution: "basemap: " + new URL(info.basemap).hostname }).addTo(state.map);
  }
  const grid = L.geoJSON(info.grid, {
    style: (f) => (f.properties.name === "aoi" ? { color: "#333", weight: 1.5 } : { color: "#999", weight: 1, dashArray: "4 4" }),
  }).addTo(state.map);
  state.map.fitBounds(grid.getBounds());
  state.map.on("click", showCell);
  for (const layer of info.layers) addLayer(layer);
  if (info.layers.length) showLayer(info.layers[0].id);
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); uploadFile(e.dataTransfer.files[0]); });
  $("file").addEventListener("change", (e) => { uploadFile(e.target.files[0]); e.target.value = ""; });
  $("species-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("species").value.trim();
    if (!name) return;
    const body = JSON.stringify({ name, mode: $("mode").value });
    query({ url: "api/species", options: { method: "POST", headers: { "Content-Type": "application/json" }, body } }, name);
  });
  const allowed = info.queries.map((m) => ({ image: "photo", audio: "recording", text: "species name" })[m]);
  $("drop").firstChild.textContent = `Drop a ${allowed.filter((a) => a !== "species name").join(" or ")} here, or click to choose one`;
  $("species-form").hidden = !info.queries.includes("text");
  $("recorder").hidden = !info.queries.includes("audio") || !navigator.mediaDevices;
  $("record").addEventListener("click", record);
  uncertaintyControls(info.uncertainty);
  document.body.dataset.ready = "1";
}

start().catch((error) => showError(error.message));
