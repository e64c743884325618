// The Promise API as a user drives it: load, validate, plan, apply with events (callback and
// async iterator) and AbortSignal, render, errors with stable codes and causes.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { Lab, CloudletError, validate, schema, version } = require(process.env.CLOUDLET_PACKAGE || '..');
const root = path.resolve(__dirname, '..', '..', '..');

const seedCopy = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-'));
  for (const f of fs.readdirSync(path.join(root, 'examples', 'seed'))) {
    if (f.endsWith('.yaml')) fs.copyFileSync(path.join(root, 'examples', 'seed', f), path.join(dir, f));
  }
  return dir;
};

// The lab backs its state up hourly into a directory target `nas`.
const withBackup = (dir) => {
  const nas = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-nas-'));
  fs.writeFileSync(
    path.join(dir, 'backup.yaml'),
    `backup:\n  key: {env: CLOUDLET_BACKUP_KEY}\n  targets: {nas: {dir: ${nas}}}\n  state: {target: nas, every: 1h}\n`,
  );
  process.env.CLOUDLET_BACKUP_KEY = 'node-backup-key';
};

test('plan, apply with events, re-plan is empty', async () => {
  const lab = await Lab.load(seedCopy());
  assert.strictEqual(lab.name, 'seed');
  assert.deepStrictEqual(lab.validate().filter((d) => d.severity === 'error'), []);
  const plan = await lab.plan();
  assert.ok(plan.summary.create > 50);
  assert.ok(Object.isFrozen(plan.steps[0]));
  const events = [];
  const report = await lab.apply(plan, { onEvent: (e) => events.push(e.type) });
  assert.strictEqual(report.done.create, plan.summary.create);
  assert.deepStrictEqual(report.failed, []);
  assert.strictEqual(events[0], 'started');
  assert.strictEqual(events.filter((t) => t === 'step_done').length, plan.steps.length);
  const again = await lab.plan();
  assert.strictEqual(again.summary.create + again.summary.update + again.summary.delete, 0);
});

test('events as an async iterator, and cancellation by AbortSignal', async () => {
  const lab = await Lab.load(seedCopy());
  const plan = await lab.plan();
  const seen = [];
  for await (const e of lab.applyEvents(plan, { concurrency: 1 })) seen.push(e.type);
  assert.strictEqual(seen.at(-1), 'finished');
  const lab2 = await Lab.load(seedCopy());
  const plan2 = await lab2.plan();
  const ac = new AbortController();
  ac.abort();
  const report = await lab2.apply(plan2, { signal: ac.signal });
  assert.strictEqual(report.cancelled, true);
  assert.strictEqual(report.done.create, 0);
});

test('errors carry a stable code, positions and the cause', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-'));
  fs.writeFileSync(path.join(dir, 'lab.yaml'), 'name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n');
  await assert.rejects(Lab.load(dir), (e) =>
    e instanceof CloudletError && e.code === 'LAB_INVALID' && e.line === 4 && e.column === 16 &&
    e.diagnostics[0].code === 'unknown-key' && e.cause instanceof Error &&
    e.message.endsWith("lab.yaml:4:16: [unknown-key] unknown key `memroy`; did you mean `memory`?"));
  await assert.rejects(Lab.load(path.join(dir, 'missing')), (e) => e.code === 'LAB_IO');
  const seed = seedCopy();
  const lab = await Lab.load(seed);
  const plan = await lab.plan();
  const text = fs.readFileSync(path.join(seed, 'cluster.yaml'), 'utf8').replace('replicas: 2', 'replicas: 3');
  fs.writeFileSync(path.join(seed, 'cluster.yaml'), text);
  const changed = await Lab.load(seed);
  await assert.rejects(changed.apply(plan), (e) => e.code === 'PLAN_STALE' && /lab files changed/.test(e.message));
});

test('render, validate, schema and version', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-out-'));
  const n = await (await Lab.load(seedCopy())).render(out);
  assert.ok(n > 50);
  assert.deepStrictEqual(validate(path.join(root, 'examples', 'seed')), []);
  assert.strictEqual(schema().title, 'cloudlet lab');
  assert.match(version, /^\d+\.\d+\.\d+$/);
});

test('the same plan as the Rust facade, and the README example runs', async () => {
  const { execFileSync } = require('node:child_process');
  const bin = process.env.CLOUDLET_BIN;
  assert.ok(bin, 'CLOUDLET_BIN must name the cloudlet binary (bindings/test.sh sets it)');
  const dir = seedCopy();
  const plan = await (await Lab.load(dir)).plan();
  const cli = execFileSync(bin, ['plan', dir, '--output', 'json'], { encoding: 'utf8' });
  assert.strictEqual(JSON.stringify(plan), JSON.stringify(JSON.parse(cli)));

  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const [, code] = readme.match(/```js\n([\s\S]*?)```/);
  const state = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-state-'));
  const script = code
    .replace("require('cloudlet')", `require(${JSON.stringify(process.env.CLOUDLET_PACKAGE || path.resolve(__dirname, '..'))})`)
    .replace("Lab.load('examples/seed')", `Lab.load('examples/seed', { stateDir: ${JSON.stringify(state)} })`);
  const out = execFileSync(process.execPath, ['-e', `(async () => {\n${script}\n})().catch((e) => { console.error(e); process.exit(1); })`], { cwd: root, encoding: 'utf8' });
  assert.match(out, /finished/);
});

test('deleting data needs allowDataLoss; the error has its code', async () => {
  const dir = seedCopy();
  const cluster = path.join(dir, 'cluster.yaml');
  fs.writeFileSync(cluster, fs.readFileSync(cluster, 'utf8').replace('size: 1GiB}', 'size: 1GiB, retain: false}'));
  let lab = await Lab.load(dir);
  await lab.apply(await lab.plan());
  assert.deepStrictEqual(await lab.storageStatus(), []);
  fs.writeFileSync(cluster, fs.readFileSync(cluster, 'utf8').replace(
    '      volumes:\n        - {name: content, export: blog, mount: /usr/share/nginx/html, size: 1GiB, retain: false}\n', ''));
  lab = await Lab.load(dir);
  const plan = await lab.plan();
  assert.deepStrictEqual(plan.steps.filter((s) => s.data_loss).map((s) => s.id), ['storage/dataset/blog.blog.content']);
  await assert.rejects(lab.apply(plan), (e) => e instanceof CloudletError && e.code === 'DATA_LOSS');
  const report = await lab.apply(plan, { allowDataLoss: true });
  assert.deepStrictEqual(report.failed, []);
  const again = await lab.plan();
  assert.strictEqual(again.summary.create + again.summary.update + again.summary.delete, 0);
});

test('the boot service serves one install to its machine, then stops', async () => {
  const dir = seedCopy();
  const lab = await Lab.load(dir, { stateDir: path.join(dir, 'state') });
  const machines = lab.pxeStatus();
  assert.deepStrictEqual(machines.map((m) => m.name), ['k8s-master', 'k8s-node1', 'k8s-node2']);
  assert.strictEqual(machines[1].state, null);
  const mac = machines[1].mac.replaceAll(':', '-');
  const events = [];
  const svc = await lab.pxeServe({
    address: '10.0.20.11', proxyDhcp: false, httpPort: 0, tftpPort: 0, root: dir, onEvent: (e) => events.push(e),
  });
  const base = `http://${svc.httpAddress}`;
  const script = await (await fetch(`${base}/ipxe/${mac}`)).text();
  assert.match(script, /^#!ipxe\n/);
  const token = script.split('/install/k8s-node1/')[1].split('/')[0];
  const ks = await fetch(`${base}/install/k8s-node1/${token}/config`);
  assert.strictEqual(ks.status, 200);
  assert.match(await ks.text(), /--bootproto=static --ip=10\.0\.20\.11/);
  assert.strictEqual((await fetch(`${base}/install/k8s-node2/${token}/config`)).status, 403);
  const done = await fetch(`${base}/install/k8s-node1/${token}/done`, { method: 'POST', body: 'installed' });
  assert.strictEqual(done.status, 200);
  await svc.stop();
  for (let i = 0; i < 100 && !events.some((e) => e.event === 'reported'); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepStrictEqual(events.map((e) => e.event), ['boot', 'config', 'refused', 'reported']);
  assert.strictEqual(events[3].ok, true);
  assert.strictEqual(lab.pxeStatus()[1].state.phase, 'installed');
  lab.pxeReinstall('k8s-node1');
  assert.strictEqual(lab.pxeStatus()[1].state.phase, 'discovered');
  assert.throws(() => lab.pxeReinstall('nobody'), (e) => e.code === 'BOOT' && /nobody/.test(e.message));
  await assert.rejects(lab.pxeServe({ proxyDhcp: false }), (e) => e.code === 'BOOT' && /binding HTTP on 10\.0\.10\.20/.test(e.message));
});

test('another apply holding the lock has the LOCKED code', async () => {
  const { spawn, spawnSync } = require('node:child_process');
  const dir = seedCopy();
  const lab = await Lab.load(dir);
  const plan = await lab.plan();
  fs.mkdirSync(path.join(dir, '.cloudlet'), { recursive: true });
  const lock = path.join(dir, '.cloudlet', 'lock');
  fs.writeFileSync(lock, '');
  const holder = spawn('flock', [lock, 'sleep', '30'], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 200 && spawnSync('flock', ['-n', lock, 'true']).status === 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    await assert.rejects(lab.apply(plan), (e) => e instanceof CloudletError && e.code === 'LOCKED' && /another apply is running/.test(e.message));
  } finally {
    holder.kill();
  }
});

test('a stale saved plan has the PLAN_STALE code, as in the CLI', async () => {
  const lab = await Lab.load(seedCopy());
  const plan = await lab.plan();
  const saved = JSON.parse(JSON.stringify(plan));
  assert.deepStrictEqual((await lab.apply(plan)).failed, []);
  await assert.rejects(lab.apply(saved), (e) => e instanceof CloudletError && e.code === 'PLAN_STALE' && /infrastructure changed/.test(e.message));
});

// A vault key for tests only (made with `cloudlet key new`; it protects nothing real).
const TEST_VAULT_KEY = 'AGE-SECRET-KEY-1254S4P44ZUUJTCXVU3PPXQVUQUNNJJ2APTVXPQ9DTCMALELAXMZQFFHANH';

test('an admin kubeconfig for the cluster cloudlet makes', async () => {
  const dir = seedCopy();
  const plain = await Lab.load(dir);
  assert.throws(() => plain.kubeconfig(), (e) => e.code === 'LAB_INVALID' && /does not make this lab's cluster/.test(e.message));
  const edit = (f, from, to) => fs.writeFileSync(path.join(dir, f), fs.readFileSync(path.join(dir, f), 'utf8').replace(from, to));
  edit('cluster.yaml', '  workers: [k8s-node1, k8s-node2]\n', '  workers: [k8s-node1, k8s-node2]\n  kubernetes: {version: v1.36.3}\n');
  edit('lab.yaml', '  cluster: {kind: local}\n', '  cluster: {kind: kubeadm, credentials: {file: install-user}}\n');
  const lab = await Lab.load(dir);
  const saved = process.env.CLOUDLET_VAULT_KEY;
  try {
    delete process.env.CLOUDLET_VAULT_KEY;
    assert.throws(() => lab.kubeconfig(), (e) => e.code === 'LAB_IO' && /CLOUDLET_VAULT_KEY/.test(e.message));
    process.env.CLOUDLET_VAULT_KEY = TEST_VAULT_KEY;
    const first = lab.kubeconfig(600);
    assert.match(first, /server: https:\/\/10\.0\.20\.10:6443/);
    const ca = (t) => t.split('certificate-authority-data: ')[1].split(/\s/)[0];
    assert.strictEqual(ca(lab.kubeconfig()), ca(first));
  } finally {
    if (saved === undefined) delete process.env.CLOUDLET_VAULT_KEY;
    else process.env.CLOUDLET_VAULT_KEY = saved;
  }
});

test('backups run, list, verify and restore the lab', async () => {
  const dir = seedCopy();
  fs.mkdirSync(path.join(dir, 'secrets'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'secrets', 'postmaster-password'), 'pw');
  withBackup(dir);
  const lab = await Lab.load(dir);
  assert.deepStrictEqual((await lab.apply(await lab.plan())).failed, []);
  const runs = await lab.backupRun();
  assert.deepStrictEqual(runs.map((r) => [r.class, r.target, r.error]), [['state', 'nas', null]]);
  const listed = await lab.backupList();
  assert.strictEqual(listed[0].snapshots[0].id, runs[0].snapshot.id);
  assert.ok(listed[0].snapshots[0].tags.includes('cloudlet:state'));
  const verified = await lab.backupVerify();
  assert.deepStrictEqual(verified[0].levels.map((l) => [l.level, l.ok]), [[0, true], [1, true], [2, true], [3, true]]);
  await assert.rejects(lab.restore('nas'), (e) => e.code === 'DATA_LOSS' && /refusing to restore/.test(e.message));
  fs.rmSync(path.join(dir, '.cloudlet'), { recursive: true });
  const phases = [];
  const restored = await (await Lab.load(dir)).restore('nas', { onPhase: (p) => phases.push(p.name) });
  assert.deepStrictEqual(restored.phases.map((p) => p.name), ['identity', 'router', 'infrastructure', 'cluster data', 'volumes', 'databases', 'reconcile', 'verify']);
  assert.strictEqual(restored.windows[0].class, 'state');
  assert.strictEqual(restored.windows[0].app, undefined);
});

test('doctor reports drift and a backup that never ran', async () => {
  const dir = seedCopy();
  withBackup(dir);
  const lab = await Lab.load(dir);
  assert.deepStrictEqual((await lab.apply(await lab.plan())).failed, []);
  const found = await lab.doctor({ timeout: 5 });
  assert.strictEqual(found.format, 1);
  const by = (d, check, subject) => d.findings.find((f) => f.check === check && f.subject === subject);
  assert.strictEqual(by(found, 'cluster.drift', 'cluster').status, 'ok');
  assert.strictEqual(by(found, 'cluster.drift', 'cluster').fix, undefined);
  assert.strictEqual(by(found, 'backup.fresh', 'backup state').status, 'fail');
  assert.strictEqual(found.status, 'fail');
  const yaml = path.join(dir, 'cluster.yaml');
  fs.writeFileSync(yaml, fs.readFileSync(yaml, 'utf8').replace('replicas: 2', 'replicas: 3'));
  await lab.backupRun();
  const drifted = await (await Lab.load(dir)).doctor();
  assert.strictEqual(by(drifted, 'cluster.drift', 'cluster').status, 'warn');
  assert.strictEqual(drifted.drift.cluster, 1);
  assert.strictEqual(by(drifted, 'backup.fresh', 'backup state').status, 'ok');
});

test('destroy and targets plan what the CLI plans; owned lists what cloudlet made', async () => {
  const lab = await Lab.load(seedCopy());
  assert.deepStrictEqual(await lab.owned(), []);
  const narrowed = await lab.plan({ targets: ['hypervisor/vm/k8s-node1'] });
  assert.deepStrictEqual(narrowed.targets, ['hypervisor/vm/k8s-node1']);
  assert.strictEqual(narrowed.summary.create, 6);
  assert.ok(narrowed.steps.some((s) => s.id === 'hypervisor/vm/k8s-node1'));
  await lab.apply(narrowed);
  const owned = await lab.owned();
  assert.strictEqual(owned.length, 6);
  assert.ok(owned.every((o) => o.in_lab && o.backend === 'local'));
  await lab.apply(await lab.plan());
  const teardown = await lab.plan({ destroy: true });
  assert.strictEqual(teardown.destroy, true);
  assert.ok(teardown.kept.includes('storage/dataset/mail'));
  const report = await lab.apply(teardown);
  assert.strictEqual(report.done.delete, teardown.summary.delete);
  assert.deepStrictEqual((await lab.owned()).map((o) => o.id).sort(), [...teardown.kept].sort());
  await assert.rejects(lab.plan({ targets: ['vm/x'] }), (e) => e instanceof CloudletError && e.code === 'LAB_INVALID' && /target `vm\/x`/.test(e.message));
});

test('a file that cannot be read carries its path and errno as Node I/O errors do', async () => {
  const missing = path.join(os.tmpdir(), `cloudlet-missing-${process.pid}.yaml`);
  await assert.rejects(Lab.load(missing), (e) => {
    assert.ok(e instanceof CloudletError);
    assert.strictEqual(e.code, 'LAB_IO');
    assert.strictEqual(e.path, missing);
    assert.strictEqual(e.errno, -os.constants.errno.ENOENT);
    return true;
  });
});
