// The raw Node addon: validation of the seed lab and of a broken lab, errors with stable codes.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

// The raw addon: CLOUDLET_NODE_ADDON, or this platform's package installed with the package
// under test (bindings/test.sh installs both into an empty project).
const addon = require(
  process.env.CLOUDLET_NODE_ADDON ||
    require.resolve(`cloudlet-linux-${process.arch}-gnu`, { paths: [process.env.CLOUDLET_PACKAGE] }),
);
const root = path.resolve(__dirname, '..', '..', '..');

test('the seed lab is valid', () => {
  assert.deepStrictEqual(JSON.parse(addon.validate(path.join(root, 'examples', 'seed'))), []);
});

test('findings carry positions', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-'));
  const lab = path.join(dir, 'lab.yaml');
  fs.writeFileSync(lab, 'name: t\nsite: {domain: t.lan}\nnetworks:\n  lan: {cidr: 10.0.0.0/24}\n' +
    'machines:\n  a: {cpus: 1, memory: 1GiB, nics: [{network: lan, ip: 10.0.1.5}]}\n');
  const [d] = JSON.parse(addon.validate(lab));
  assert.strictEqual(d.code, 'address-outside-network');
  assert.deepStrictEqual([d.location.line, d.location.column], [6, 56]);
});

test('errors have a stable code', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-'));
  const lab = path.join(dir, 'lab.yaml');
  fs.writeFileSync(lab, 'name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n');
  // The raw addon's reason is CODE \u0001 message \u0001 diagnostics; index.js makes it a CloudletError.
  assert.throws(() => addon.validate(lab), (e) => e.message.startsWith('LAB_INVALID\u0001') && /lab\.yaml/.test(e.message));
  assert.throws(() => addon.validate(path.join(dir, 'missing')), (e) => e.message.startsWith('LAB_IO\u0001'));
});

test('schema and version', () => {
  assert.strictEqual(JSON.parse(addon.schema()).title, 'cloudlet lab');
  assert.match(addon.version(), /^\d+\.\d+\.\d+$/);
});
