// cloudlet for Node: the Rust library behind Promises, with frozen plain objects.
//
//   const { Lab } = require('cloudlet');
//   const lab = await Lab.load('examples/seed');
//   const plan = await lab.plan();
//   const report = await lab.apply(plan, { onEvent: (e) => console.log(e.type) });
//
// Conversion only: records come from the library's JSON, errors become CloudletError with a
// stable `code` (LAB_INVALID, LAB_IO, PLAN_STALE, LOCKED, DATA_LOSS, BACKEND, RENDER, BOOT) and the cause chain.
'use strict';

// The native addon: CLOUDLET_NODE_ADDON when set (a development build), else the one built
// next to this file for this platform (`napi build --platform`), else this platform's package
// (cloudlet-linux-x64-gnu, ...: an optional dependency npm installs only where it runs).
const platformName = () => {
  const { platform, arch } = process;
  if (platform === 'linux') {
    // glibc's version is in the process report only when Node runs on glibc.
    const header = process.report && process.report.getReport().header;
    return `linux-${arch}-${header && header.glibcVersionRuntime ? 'gnu' : 'musl'}`;
  }
  return platform === 'win32' ? `win32-${arch}-msvc` : `${platform}-${arch}`;
};
const loadNative = () => {
  if (process.env.CLOUDLET_NODE_ADDON) return require(process.env.CLOUDLET_NODE_ADDON);
  const name = platformName();
  const local = require('node:path').join(__dirname, `cloudlet.${name}.node`);
  if (require('node:fs').existsSync(local)) return require(local);
  try {
    return require(`cloudlet-${name}`);
  } catch (e) {
    if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes(`cloudlet-${name}`)) {
      throw new Error(
        `cloudlet has no native addon for ${name}: install the package cloudlet-${name} ` +
          '(npm installs it with cloudlet unless optional dependencies are omitted)',
        { cause: e },
      );
    }
    throw e;
  }
};
const native = loadNative();

const deepFreeze = (v) => {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.values(v).forEach(deepFreeze);
    Object.freeze(v);
  }
  return v;
};
const parse = (text) => deepFreeze(JSON.parse(text));

/** An error of the cloudlet library; `code` is stable, `diagnostics` set for LAB_INVALID. */
class CloudletError extends Error {
  constructor(code, message, diagnostics, cause) {
    super(message, cause ? { cause } : undefined);
    this.name = 'CloudletError';
    this.code = code;
    this.diagnostics = diagnostics || [];
    const first = this.diagnostics.find((d) => d.location);
    if (first) {
      this.file = first.location.file;
      this.line = first.location.line;
      this.column = first.location.column;
    }
  }
}

const convert = (e) => {
  const parts = String(e && e.message).split('\u0001');
  if (parts.length < 2) return e;
  const [code, message, diagnostics, io] = parts;
  const diags = diagnostics ? parse(diagnostics) : [];
  // The message is the library's: for a lab error its first positioned problem and how many more.
  const err = new CloudletError(code, message, diags, e);
  if (io) {
    // As Node's own I/O errors: `path`, and `errno` negative (-2 for ENOENT).
    const { path: file, errno } = JSON.parse(io);
    if (file != null) err.path = file;
    if (errno != null) err.errno = -errno;
  }
  return err;
};

const wrap = (fn) => {
  try {
    return fn();
  } catch (e) {
    throw convert(e);
  }
};
const wrapAsync = async (p) => {
  try {
    return await p;
  } catch (e) {
    throw convert(e);
  }
};

// A plan's head (format, lab, digests, domains, summary) is read at once; its steps, held
// changes and kept ids only when first asked for, from the native plan: a plan of thousands
// of resources crosses into JavaScript only if it is looked at. JSON.stringify(plan) gives
// the library's JSON.
const NATIVE = Symbol('cloudlet.nativePlan');
const full = new WeakMap();
const whole = (plan) => {
  let v = full.get(plan);
  if (!v) {
    v = parse(plan[NATIVE] ? plan[NATIVE].toJson() : '{}');
    full.set(plan, v);
  }
  return v;
};
class Plan {
  constructor(nativePlan) {
    Object.assign(this, deepFreeze(JSON.parse(nativePlan.head())));
    Object.defineProperty(this, NATIVE, { value: nativePlan });
    Object.freeze(this);
  }
  get steps() {
    return whole(this).steps;
  }
  get held() {
    return whole(this).held || [];
  }
  get kept() {
    return whole(this).kept || [];
  }
  toJSON() {
    return whole(this);
  }
}

class Lab {
  /** @param {import('./native').NativeLab} inner */
  constructor(inner) {
    this._native = inner;
  }

  /** Loads a lab file or directory. Rejects with a CloudletError (LAB_INVALID, LAB_IO). */
  static async load(path, { stateDir, takeOver } = {}) {
    return new Lab(wrap(() => native.NativeLab.load(String(path), stateDir, takeOver)));
  }

  get name() {
    return this._native.name;
  }

  /** Every finding of the whole lab, with positions. No I/O. */
  validate() {
    return parse(this._native.validate());
  }

  /**
   * What apply would create, change or delete, field by field. `destroy` plans the removal of
   * everything the lab owns (retained data kept); `targets` (ids as `domain/kind/name`, or
   * `domain/kind`, `domain`) narrows the plan to those resources and the steps they need.
   */
  async plan({ destroy, targets } = {}) {
    return new Plan(await wrapAsync(this._native.plan(destroy, targets)));
  }

  /** What cloudlet owns in the lab's backends, found by its markers. */
  async owned() {
    return parse(await wrapAsync(this._native.owned()));
  }

  /**
   * Applies `plan`. `onEvent` gets progress events; `signal` (an AbortSignal) cancels: running
   * steps finish, no new step starts.
   */
  async apply(plan, { onEvent, signal, concurrency, allowDataLoss } = {}) {
    const cancel = new native.NativeCancel();
    if (signal) {
      if (signal.aborted) cancel.cancel();
      else signal.addEventListener('abort', () => cancel.cancel(), { once: true });
    }
    const cb = onEvent ? (text) => onEvent(parse(text)) : undefined;
    const run = plan && plan[NATIVE]
      ? this._native.apply(plan[NATIVE], cb, cancel, concurrency, allowDataLoss)
      : this._native.applyJson(JSON.stringify(plan), cb, cancel, concurrency, allowDataLoss);
    return parse(await wrapAsync(run));
  }

  /** Applies `plan`, yielding each progress event; the last one is `finished` with the report. */
  async *applyEvents(plan, options = {}) {
    const queue = [];
    let wake = null;
    let done = false;
    let failure = null;
    this.apply(plan, {
      ...options,
      onEvent: (e) => {
        queue.push(e);
        if (wake) wake();
      },
    })
      .catch((e) => {
        failure = e;
      })
      .finally(() => {
        done = true;
        if (wake) wake();
      });
    for (;;) {
      if (queue.length) {
        const e = queue.shift();
        yield e;
        if (e.type === 'finished') return;
        continue;
      }
      if (done) {
        if (failure) throw failure;
        return;
      }
      await new Promise((r) => {
        wake = r;
      });
      wake = null;
    }
  }

  /** Writes every resource (and its artifacts) under `dir`; the number written. */
  async render(dir) {
    return wrapAsync(this._native.render(String(dir)));
  }

  /** Health of the cluster's objects; `wait` seconds to let them settle. */
  async clusterHealth(wait) {
    return parse(await wrapAsync(this._native.clusterHealth(wait)));
  }

  /**
   * Checks the running lab: every backend reached and observed, drift, the cluster's nodes,
   * stuck pods, objects, addresses and certificates, installs, backups' age — all at once,
   * each check within `timeout` seconds (default 10). Never rejects for what it finds.
   */
  async doctor(options = {}) {
    return parse(await wrapAsync(this._native.doctor(options.timeout, options.concurrency)));
  }

  /** Backs up each class the lab declares (or those in `classes`) now. */
  async backupRun(classes) {
    return parse(await wrapAsync(this._native.backupRun(classes)));
  }

  /** The snapshots each backup target holds. */
  async backupList() {
    return parse(await wrapAsync(this._native.backupList()));
  }

  /** Each class's climb up the verification ladder to `level` (0-3, default 3). */
  async backupVerify(level) {
    return parse(await wrapAsync(this._native.backupVerify(level)));
  }

  /** Rebuilds the lab from the backup target `from`; `onPhase` gets each phase as it ends. */
  async restore(from, { force, resume, onPhase } = {}) {
    const cb = onPhase ? (text) => onPhase(JSON.parse(text)) : undefined;
    return parse(await wrapAsync(this._native.restore(from, force, resume, cb)));
  }

  /** The lab's volumes on the NAS: path, clients, usage, newest snapshot. */
  async storageStatus() {
    return parse(await wrapAsync(this._native.storageStatus()));
  }

  /**
   * Starts the lab's network boot service in the background; options left out come from
   * the lab's `pxe.serve`. `onEvent` gets each boot event.
   */
  async pxeServe({ address, iface, root, proxyDhcp, loader, httpPort, tftpPort, onEvent } = {}) {
    const options = Object.fromEntries(
      Object.entries({
        address,
        interface: iface,
        root: root === undefined ? undefined : String(root),
        proxy_dhcp: proxyDhcp,
        loader,
        http_port: httpPort,
        tftp_port: tftpPort,
      }).filter(([, v]) => v !== undefined),
    );
    const cb = onEvent ? (text) => onEvent(parse(text)) : undefined;
    return new BootService(await wrapAsync(this._native.pxeServe(JSON.stringify(options), cb)));
  }

  /** Each machine that installs over the network, with its install state (null until seen). */
  pxeStatus() {
    return wrap(() => parse(this._native.pxeStatus()));
  }

  /** Installs `machine` again at its next network boot. */
  pxeReinstall(machine) {
    wrap(() => this._native.pxeReinstall(String(machine)));
  }

  /**
   * An admin kubeconfig for the cluster cloudlet makes: a client certificate valid for
   * `validSeconds` (default an hour, at most a day). It holds a private key.
   */
  kubeconfig(validSeconds) {
    return wrap(() => this._native.kubeconfig(validSeconds === undefined ? undefined : Number(validSeconds)));
  }
}

/** A running network boot service; `stop()` ends it. */
class BootService {
  constructor(native) {
    this._native = native;
    this.httpAddress = native.httpAddress;
    this.tftpAddress = native.tftpAddress;
    Object.freeze(this);
  }

  /** Stops the service and waits for it to end. */
  async stop() {
    return wrapAsync(this._native.stop());
  }

  async [Symbol.asyncDispose]() {
    return this.stop();
  }
}

/** The diagnostics of the lab at `path`. */
const validate = (path) => wrap(() => parse(native.validate(String(path))));
/** The JSON Schema of the lab format. */
const schema = () => JSON.parse(native.schema());

module.exports = { Lab, CloudletError, validate, schema, version: native.version() };
