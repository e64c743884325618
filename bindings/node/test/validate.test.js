// The Node addon: validation of the seed lab and of a broken lab, errors with stable codes.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const addon = require(process.env.CLOUDLET_NODE_ADDON);
const root = path.resolve(__dirname, '..', '..', '..');

test('the seed lab is valid', () => {
  const report = JSON.parse(addon.validate(path.join(root, 'examples', 'seed')));
  assert.deepStrictEqual(report.diagnostics, []);
});

test('findings carry positions', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-'));
  const lab = path.join(dir, 'lab.yaml');
  fs.writeFileSync(lab, 'name: t\nsite: {domain: t.lan}\nnetworks:\n  lan: {cidr: 10.0.0.0/24}\n' +
    'machines:\n  a: {cpus: 1, memory: 1GiB, nics: [{network: lan, ip: 10.0.1.5}]}\n');
  const [d] = JSON.parse(addon.validate(lab)).diagnostics;
  assert.strictEqual(d.code, 'address-outside-network');
  assert.deepStrictEqual([d.location.line, d.location.column], [6, 56]);
});

test('errors have a stable code', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-'));
  const lab = path.join(dir, 'lab.yaml');
  fs.writeFileSync(lab, 'name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n');
  assert.throws(() => addon.validate(lab), (e) => e.code === 'LAB_INVALID' && /lab\.yaml:4:16/.test(e.message));
  assert.throws(() => addon.validate(path.join(dir, 'missing')), (e) => e.code === 'LAB_IO');
});

test('schema and version', () => {
  assert.strictEqual(JSON.parse(addon.schema()).title, 'cloudlet lab');
  assert.match(addon.version(), /^\d+\.\d+\.\d+$/);
});
