// TF.js (pure JavaScript, CPU backend) as the test oracle for weightkit's tfjs format, and the
// writer of the fixtures TF.js itself saves. No browser, no tfjs-node: model.json is read with
// `fs` and handed to TF.js through an IOHandler, as DEPLOY-FORMATS.md describes.
//
//   node oracle.js weights MODEL_JSON          every weight as TF.js decodes it (JSON on stdout)
//   node oracle.js predict MODEL_JSON INPUT    load the layers or graph model, run it on INPUT
//                                              (a JSON file {"shape": [...], "values": [...]})
//   node oracle.js save OUT_DIR                write the fixtures TF.js saves (seeded)
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

tf.setBackend('cpu');

// An IOHandler reading model.json and its weight files from the local disk: each group's files
// are concatenated in manifest order (what tf.io.http / browserFiles do after fetching them).
function localHandler(modelJson) {
  const dir = path.dirname(modelJson);
  return {
    async load() {
      const json = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const data = fs.readFileSync(path.join(dir, p));
            buffers.push(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
          }
        }
        return [specs, tf.io.concatenateArrayBuffers(buffers)];
      });
    },
  };
}

function bytesOf(t) {
  if (t.dtype === 'string') {
    return t.dataSync().map((s) => Buffer.from(s).toString('base64'));
  }
  if (t.dtype === 'complex64') {
    const re = tf.real(t).dataSync();
    const im = tf.imag(t).dataSync();
    const both = new Float32Array(re.length * 2);
    for (let i = 0; i < re.length; i++) {
      both[2 * i] = re[i];
      both[2 * i + 1] = im[i];
    }
    return Buffer.from(both.buffer).toString('base64');
  }
  const data = t.dataSync();
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
}

async function weights(modelJson) {
  const artifacts = await localHandler(modelJson).load();
  const out = {};
  if (artifacts.weightSpecs) {
    const decoded = tf.io.decodeWeights(artifacts.weightData, artifacts.weightSpecs);
    for (const spec of artifacts.weightSpecs) {
      const t = decoded[spec.name];
      out[spec.name] = {dtype: t.dtype, shape: t.shape, data: bytesOf(t)};
    }
  }
  return out;
}

async function predict(modelJson, inputPath) {
  const input = JSON.parse(fs.readFileSync(inputPath, 'utf8'));
  const json = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const x = tf.tensor(input.values, input.shape, input.dtype || 'float32');
  let y;
  if (json.format === 'graph-model') {
    const model = await tf.loadGraphModel(localHandler(modelJson));
    y = model.predict(x);
  } else {
    const model = await tf.loadLayersModel(localHandler(modelJson));
    y = model.predict(x);
  }
  if (Array.isArray(y)) y = y[0];
  return {shape: y.shape, dtype: y.dtype, data: bytesOf(y)};
}

// --- fixtures TF.js writes itself -------------------------------------------------------------

function saveHandler(dir) {
  // As tf.io.http / browserDownloads write a model: model.json (JSON.stringify of the
  // ModelJSON, tfjs-core io_utils getModelJSONForModelArtifacts) and one model.weights.bin.
  return tf.io.withSaveHandler(async (artifacts) => {
    fs.mkdirSync(dir, {recursive: true});
    const manifest = [{paths: ['model.weights.bin'], weights: artifacts.weightSpecs}];
    const json = {
      modelTopology: artifacts.modelTopology,
      format: artifacts.format,
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy,
      weightsManifest: manifest,
    };
    if (artifacts.trainingConfig != null) json.trainingConfig = artifacts.trainingConfig;
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
    const data = tf.io.CompositeArrayBuffer.join(artifacts.weightData);
    fs.writeFileSync(path.join(dir, 'model.weights.bin'), Buffer.from(data));
    return {modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts)};
  });
}

async function save(out) {
  const seed = 1234;
  const init = (i) => tf.initializers.randomNormal({mean: 0, stddev: 0.5, seed: seed + i});
  // A Sequential with a nested Sequential and a BatchNormalization (non-trainable weights).
  const inner = tf.sequential({name: 'block', layers: [
    tf.layers.dense({inputShape: [6], units: 5, activation: 'relu', name: 'inner_fc',
                     kernelInitializer: init(1), biasInitializer: init(2)}),
  ]});
  const model = tf.sequential({name: 'tfjs_mlp', layers: [
    tf.layers.dense({inputShape: [4], units: 6, name: 'fc1', kernelInitializer: init(3),
                     biasInitializer: init(4)}),
    tf.layers.batchNormalization({name: 'bn', gammaInitializer: init(5), betaInitializer: init(6),
                                  movingMeanInitializer: init(7),
                                  movingVarianceInitializer: 'ones'}),
    inner,
    tf.layers.dense({units: 3, name: 'fc2', kernelInitializer: init(8),
                     biasInitializer: init(9)}),
  ]});
  await model.save(saveHandler(path.join(out, 'mlp--tfjs-saved')));

  // Every dtype TF.js weights have, encoded by TF.js (tf.io.encodeWeights), as a weights-only
  // model.json.
  const tensors = {
    'dtypes/float32': tf.tensor([1.5, -0, 3.25e-3, 1e30], [2, 2], 'float32'),
    'dtypes/int32': tf.tensor([7, -8, 2147483647], [3], 'int32'),
    'dtypes/bool': tf.tensor([true, false, true], [3], 'bool'),
    'dtypes/complex64': tf.complex([1.5, -2], [0.25, 8]),
    'dtypes/string': tf.tensor(['ab', '', 'h\u00e9llo', 'x'.repeat(70)], [2, 2], 'string'),
    'dtypes/scalar': tf.scalar(42, 'int32'),
    'dtypes/empty': tf.zeros([0, 3]),
  };
  const encoded = await tf.io.encodeWeights(tensors);
  const dir = path.join(out, 'dtypes--tfjs-encoded');
  fs.mkdirSync(dir, {recursive: true});
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(
      {weightsManifest: [{paths: ['weights.bin'], weights: encoded.specs}]}));
  fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(encoded.data));
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  let result;
  if (mode === 'weights') result = await weights(args[0]);
  else if (mode === 'predict') result = await predict(args[0], args[1]);
  else if (mode === 'save') result = await save(args[0]);
  else throw new Error(`unknown mode ${mode}`);
  if (result !== undefined) process.stdout.write(JSON.stringify(result));
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
