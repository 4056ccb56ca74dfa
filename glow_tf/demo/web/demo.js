"use strict";
// The page of glow-demo: four views over the JSON API of glow_tf/demo/api.py.
//
// Every request goes through `queue`, one at a time: a view has at most one request waiting, and
// a newer one replaces it, so a slider drag sends the value it rests on, not every value it
// passed; the status line says "working" while anything is waiting or computing, and a view's
// images are dimmed until their answer arrives. Errors are shown in the view that asked.

// view -> [ids of the images it renders], and the panel whose error line it writes to.
const VIEWS = {
  "samples": {outputs: ["sample-grid"], panel: "samples"},
  "encode": {outputs: ["encode-input", "encode-output"], panel: "encode"},
  "mix-a": {outputs: ["mix-a"], panel: "mix"},
  "mix-b": {outputs: ["mix-b"], panel: "mix"},
  "mix": {outputs: ["mix-output"], panel: "mix"},
  "manipulate-image": {outputs: ["manipulate-input"], panel: "manipulate"},
  "manipulate": {outputs: ["manipulate-output"], panel: "manipulate"},
};
// The images that pickers load into, with what to do once one is encoded.
const SLOTS = {
  "encode": {picker: "encode-picker", example: 0, encoded: showReconstruction},
  "mix-a": {picker: "mix-a-picker", example: 0, encoded: answer => showInput("mix-a", answer, requestMix)},
  "mix-b": {picker: "mix-b-picker", example: 1, encoded: answer => showInput("mix-b", answer, requestMix)},
  "manipulate-image": {picker: "manipulate-picker", example: 2,
                       encoded: answer => showInput("manipulate-input", answer, requestManipulation)},
};

// What an image shows until its view has an answer: a transparent pixel, drawn at the image's size.
const BLANK = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7";

const queue = {busy: false, waiting: new Map()};  // view -> {path, body, answered}
const errors = {};  // view -> message of its last failed request
const state = {info: null, seed: 0, slots: {}};  // slots: view -> {source, z, note}

const $ = id => document.getElementById(id);

// ------------------------------------------------------------------------------------ requests
function submit(view, path, body, answered) {
  queue.waiting.delete(view);  // to the back of the line: views take turns
  queue.waiting.set(view, {path, body, answered});
  setPending(view, true);
  pump();
}

async function pump() {
  showStatus();
  if (queue.busy || queue.waiting.size === 0) return;  // the answer being awaited pumps again
  const [view, job] = queue.waiting.entries().next().value;
  queue.waiting.delete(view);
  queue.busy = true;
  showStatus();
  let answer = null, error = null;
  try {
    const response = await fetch(job.path, {method: "POST", headers: {"Content-Type": "application/json"},
                                            body: JSON.stringify(job.body)});
    answer = await response.json().catch(() => ({error: `HTTP ${response.status} ${response.statusText}`}));
    if (!response.ok) error = answer.error || `HTTP ${response.status} ${response.statusText}`;
  } catch (e) {
    error = `the server did not answer (${e.message}): is glow-demo still running?`;
  }
  queue.busy = false;
  if (!queue.waiting.has(view)) setPending(view, false);
  setError(view, error);
  if (!error) job.answered(answer);
  pump();
}

function showStatus() {
  const working = queue.busy || queue.waiting.size > 0;
  $("status").textContent = working ? "working…" : "ready";
  $("status").classList.toggle("busy", working);
}

function setPending(view, pending) {
  for (const id of VIEWS[view].outputs) $(id).classList.toggle("pending", pending);
}

function setError(view, message) {
  errors[view] = message;
  const panel = VIEWS[view].panel;
  const messages = Object.keys(VIEWS).filter(v => VIEWS[v].panel === panel && errors[v]).map(v => errors[v]);
  $(`${panel}-error`).textContent = messages.join("\n");
}

// ----------------------------------------------------------------------------------- the views
function requestSamples() {
  const classChoice = $("sample-class").value;
  submit("samples", "/api/random", {temperature: Number($("temperature").value), n: state.info.samples,
                                    seed: state.seed, y: classChoice === "" ? null : Number(classChoice)},
         answer => showSamples(answer.images, classChoice));
}

function showSamples(images, classChoice) {
  const model = state.info.model;
  const grid = $("sample-grid");
  grid.replaceChildren(...images.map((source, i) => {
    const figure = document.createElement("figure");
    figure.append(image(source, tileSize(48), `sample ${i}`));
    if (model.ycond) {
      const caption = document.createElement("figcaption");
      caption.textContent = `class ${classChoice === "" ? i % model.n_y : classChoice}`;
      figure.append(caption);
    }
    return figure;
  }));
}

function imageClass() {
  return state.info.model.ycond ? Number($("image-class").value) : null;
}

function encodeInto(view, source) {
  const slot = {source, z: null, note: ""};
  state.slots[view] = slot;
  markSelected(view, source);
  submit(view, "/api/encode", {...source, y: imageClass()}, answer => {
    if (state.slots[view] !== slot) return;  // another image was picked while this one was encoded
    slot.z = answer.z;
    slot.note = answer.note || slot.note;
    // Encoding again (for another class) sends the image as the model saw it: small, and exact.
    if (source.image !== undefined) slot.source = {image: answer.image};
    SLOTS[view].encoded(answer);
  });
}

function showReconstruction(answer) {
  $("encode-input").src = answer.image;
  $("encode-output").src = answer.reconstruction;
  $("encode-note").textContent = state.slots["encode"].note;
}

function showInput(id, answer, then) {
  $(id).src = answer.image;
  then();
}

function requestMix() {
  const a = state.slots["mix-a"], b = state.slots["mix-b"];
  if (!a || !b || !a.z || !b.z) return;
  submit("mix", "/api/mix", {z1: a.z, z2: b.z, alpha: Number($("mix-alpha").value), y: imageClass()},
         answer => { $("mix-output").src = answer.image; });
}

function requestManipulation() {
  const slot = state.slots["manipulate-image"];
  if (!slot || !slot.z || state.info.attributes.names.length === 0) return;
  const alphas = [...document.querySelectorAll("#attribute-sliders input")].map(slider => Number(slider.value));
  submit("manipulate", "/api/manipulate", {z: slot.z, alphas, y: imageClass()},
         answer => { $("manipulate-output").src = answer.image; });
}

// ------------------------------------------------------------------------------------- building
function tileSize(least) {
  // Nearest-neighbour upscaling by a whole factor: small images (16x16 digits) stay sharp.
  const size = state.info.model.image_size;
  return size >= least ? Math.min(size, 4 * least) : size * Math.ceil(least / size);
}

function image(source, size, alt) {
  const element = document.createElement("img");
  element.src = source;
  element.width = element.height = size;
  element.alt = alt;
  return element;
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

function buildPicker(view) {
  const picker = $(SLOTS[view].picker);
  const thumbs = document.createElement("div");
  thumbs.className = "thumbs";
  state.info.examples.forEach((example, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.dataset.example = i;
    button.title = `held-out image ${i}` + (example.label === null ? "" : ` (class ${example.label})`);
    button.append(image(example.image, tileSize(24), button.title));
    button.addEventListener("click", () => encodeInto(view, {example: i}));
    thumbs.append(button);
  });
  const upload = document.createElement("label");
  upload.className = "upload";
  upload.textContent = state.info.examples.length ? "or upload " : "upload an image ";
  const input = document.createElement("input");
  input.type = "file";
  input.accept = "image/*";
  input.addEventListener("change", () => { if (input.files.length) uploadFile(view, input.files[0]); input.value = ""; });
  upload.append(input);
  picker.replaceChildren(thumbs, upload);
}

function uploadFile(view, file) {
  const limit = state.info.max_upload_bytes;
  if (file.size > limit) {  // refused here: the server would not read it either
    setError(view, `image: expected a file of at most ${limit.toLocaleString("en")} bytes, got ` +
                   `${file.size.toLocaleString("en")} (${file.name})`);
    return;
  }
  const reader = new FileReader();
  reader.addEventListener("load", () => encodeInto(view, {image: reader.result}));
  reader.addEventListener("error", () => setError(view, `could not read ${file.name} (${reader.error})`));
  reader.readAsDataURL(file);
}

function markSelected(view, source) {
  for (const thumb of $(SLOTS[view].picker).querySelectorAll(".thumb")) {
    thumb.classList.toggle("selected", Number(thumb.dataset.example) === source.example);
  }
}

function buildSliders() {
  const {names, source} = state.info.attributes;
  const alpha = state.info.alpha;
  $("attribute-source").textContent = names.length ? `Directions: ${source}.` : `No attribute directions: ${source}.`;
  $("reset-attributes").hidden = names.length === 0;
  $("attribute-sliders").replaceChildren(...names.map((name, k) => {
    const label = document.createElement("label");
    const slider = document.createElement("input");
    Object.assign(slider, {type: "range", min: alpha.min, max: alpha.max, step: 0.01, value: 0});
    slider.dataset.attribute = k;
    const value = document.createElement("output");
    value.textContent = "0.00";
    slider.addEventListener("input", () => { value.textContent = Number(slider.value).toFixed(2); requestManipulation(); });
    const text = document.createElement("span");
    text.textContent = name;
    label.append(text, slider, value);
    return label;
  }));
}

function describeModel(model) {
  const kind = model.ycond ? `class-conditional (${model.n_y} classes)` : "unconditional";
  return `${model.name}: ${model.image_size}×${model.image_size}×${model.n_channels} images, ` +
         `${model.n_levels} levels of depth ${model.depth}, ${kind}, latent of ${model.latent_size.toLocaleString("en")} values`;
}

function build(info) {
  state.info = info;
  $("model-description").textContent = describeModel(info.model);
  const temperature = $("temperature");
  Object.assign(temperature, {min: info.temperature.min, max: info.temperature.max, value: info.temperature.default});
  $("temperature-value").textContent = Number(temperature.value).toFixed(2);
  if (info.model.ycond) {
    const classes = [...Array(info.model.n_y).keys()];
    $("sample-class").replaceChildren(option("", `one per image (i mod ${info.model.n_y})`),
                                      ...classes.map(k => option(k, `class ${k}`)));
    $("image-class").replaceChildren(...classes.map(k => option(k, `class ${k}`)));
    for (const element of document.querySelectorAll(".conditional")) element.hidden = false;
  }
  for (const id of ["encode-input", "encode-output", "mix-a", "mix-output", "mix-b", "manipulate-input",
                    "manipulate-output"]) {
    $(id).width = $(id).height = tileSize(96);
    $(id).src = BLANK;
  }
  for (const view of Object.keys(SLOTS)) buildPicker(view);
  buildSliders();

  temperature.addEventListener("input", () => {
    $("temperature-value").textContent = Number(temperature.value).toFixed(2);
    requestSamples();
  });
  $("sample-class").addEventListener("change", requestSamples);
  $("new-samples").addEventListener("click", () => {
    state.seed = Math.floor(Math.random() * 2 ** 31);
    requestSamples();
  });
  $("mix-alpha").addEventListener("input", () => {
    $("mix-alpha-value").textContent = Number($("mix-alpha").value).toFixed(2);
    requestMix();
  });
  $("reset-attributes").addEventListener("click", () => {
    for (const slider of document.querySelectorAll("#attribute-sliders input")) slider.value = 0;
    for (const value of document.querySelectorAll("#attribute-sliders output")) value.textContent = "0.00";
    requestManipulation();
  });
  $("image-class").addEventListener("change", () => {  // a latent belongs to the class it was encoded as
    for (const [view, slot] of Object.entries(state.slots)) encodeInto(view, slot.source);
  });

  requestSamples();
  for (const [view, slot] of Object.entries(SLOTS)) {
    if (info.examples.length) encodeInto(view, {example: slot.example % info.examples.length});
  }
}

async function start() {
  try {
    const response = await fetch("/api/info");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    build(await response.json());
  } catch (e) {
    $("page-error").textContent = `Could not load the model's description from the server (${e.message}).`;
  }
  showStatus();
}

start();
