"""Starts fakepve (PyPI, a stateful simulator of the Proxmox VE API written by others) for
cloudlet's tests on a loopback port with the certificate the test made. Prints the URL on its
first line, then serves until killed.

    python fakepve_launch.py GUESTS.json CERT KEY TOKENID SECRET [BUSY]

What this launcher adds to fakepve, as a small layer of the tests' own:
- an API token (fakepve's command line cannot seed one);
- PUT /nodes/{node}/qemu/{vmid}/resize, which fakepve does not simulate for VMs: grows the
  disk's size in the configuration, refuses to shrink, as PVE does;
- BUSY: the first BUSY configuration writes fail with PVE's lock timeout ("can't lock file
  ... got timeout"), as under parallel operations on one VM;
- SDN VNets, which fakepve answers statelessly: the configuration (`/cluster/sdn/vnets`,
  edits pending until applied), the `?pending=1` view (state new/changed/deleted and the
  pending values) and the apply (`PUT /cluster/sdn`, a task) that makes them running.
"""

import asyncio
import json
import re
import sys

from fakepve.model import PveError, lock_timeout
from fakepve.server import FakePve

UNITS = {'K': 1 / 1024 / 1024, 'M': 1 / 1024, 'G': 1, 'T': 1024}


def gib(text):
    m = re.fullmatch(r'(\d+(?:\.\d+)?)([KMGT])', text)
    return float(m.group(1)) * UNITS[m.group(2)]


class TestPve(FakePve):
    busy = 0

    def _routes_qemu(self):
        return super()._routes_qemu() + [('PUT', '/nodes/{node}/qemu/{vmid}/resize', self._qm_resize)]

    def _routes_sdn_vnets(self):
        one = '/cluster/sdn/vnets/{vnet}'
        return [('GET', '/cluster/sdn/vnets', self._vnet_list), ('POST', '/cluster/sdn/vnets', self._vnet_create),
                ('PUT', one, self._vnet_update), ('DELETE', one, self._vnet_delete),
                ('PUT', '/cluster/sdn', self._sdn_apply)]

    def _sdn(self):
        if not hasattr(self, 'sdn_config'):
            self.sdn_config, self.sdn_running = {}, {}
        return self.sdn_config

    async def _vnet_list(self, v, user):
        cfg, running = self._sdn(), self.sdn_running
        if not v.get('pending'):
            return [dict(x) for _, x in sorted(cfg.items())]
        out = []
        for name in sorted(set(cfg) | set(running)):
            new, old = cfg.get(name), running.get(name)
            if new == old:
                out.append(dict(old))
            elif old is None:
                out.append({'vnet': name, 'type': 'vnet', 'state': 'new', 'pending': dict(new)})
            elif new is None:
                out.append(dict(old, state='deleted'))
            else:
                changed = dict((k, x) for k, x in new.items() if old.get(k) != x)
                out.append(dict(old, state='changed', pending=changed))
        return out

    async def _vnet_create(self, v, user):
        cfg = self._sdn()
        name = v['vnet']
        if name in cfg:
            raise PveError(500, "create sdn vnet object failed: vnet '{0}' already defined".format(name))
        cfg[name] = dict(dict((k, x) for k, x in v.items() if k in ('zone', 'tag', 'alias', 'vlanaware')),
                         vnet=name, type='vnet')
        return None

    async def _vnet_update(self, v, user):
        cfg = self._sdn()
        name = v['vnet']
        if name not in cfg:
            raise PveError(500, "sdn vnet '{0}' does not exist".format(name))
        new = dict(cfg[name])
        for k in str(v.get('delete', '')).split(','):
            new.pop(k, None)
        new.update((k, x) for k, x in v.items() if k in ('tag', 'alias', 'vlanaware'))
        cfg[name] = new
        return None

    async def _vnet_delete(self, v, user):
        if self._sdn().pop(v['vnet'], None) is None:
            raise PveError(500, "sdn vnet '{0}' does not exist".format(v['vnet']))
        return None

    async def _sdn_apply(self, v, user):
        self._sdn()

        async def body():
            self.sdn_running = dict((k, dict(x)) for k, x in self.sdn_config.items())
            self.sdn_applies = getattr(self, 'sdn_applies', 0) + 1
        return await self.task('pve1', 'reloadnetworkall', '', user, body)

    async def _apply_config(self, vm, user, p):
        if self.busy > 0:
            self.busy -= 1
            raise PveError(500, lock_timeout(vm.vmid))
        return await super()._apply_config(vm, user, p)

    async def _qm_resize(self, v, user):
        vm = self.find(v['node'], v['vmid'])
        disk, size = v['disk'], str(v['size'])
        value = vm.config.get(disk)
        if value is None:
            raise PveError(500, 'disk {0} does not exist'.format(disk))
        m = re.search(r'size=([^,]+)', value)
        have = gib(m.group(1)) if m else 0
        want = have + gib(size[1:]) if size.startswith('+') else gib(size)
        if want < have:
            raise PveError(500, 'shrinking disks is not supported')

        async def body():
            new = 'size={0:g}G'.format(want)
            vm.config[disk] = re.sub(r'size=[^,]+', new, value) if m else value + ',' + new
        return await self.task(vm.node, 'resize', vm.vmid, user, body, vm=vm)


async def main():
    guests_file, cert, key, tokenid, secret = sys.argv[1:6]
    pve = TestPve(user='root@pam', password='not-used', host='127.0.0.1', port=0)
    pve.time_scale = 0
    pve.busy = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    pve.apitokens[tokenid] = secret
    with open(guests_file) as f:
        for g in json.load(f)['guests']:
            pve.add_vm(g['vmid'], g['name'], node=g.get('node', 'pve1'),
                       status=g.get('status', 'stopped'), config=g.get('config', {}),
                       template=g.get('template', False))
    await pve.start(cert, key)
    print(pve.url, flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
