// The JVM binding as a Kotlin user calls it: suspend functions returning typed records,
// listeners for events, errors as CloudletException subclasses.
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.Paths
import java.util.Collections
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import dev.cloudlet.BootEvent
import dev.cloudlet.BootListener
import dev.cloudlet.BootOptions
import dev.cloudlet.Cancel
import dev.cloudlet.CloudletException
import dev.cloudlet.Event
import dev.cloudlet.EventListener
import dev.cloudlet.Lab
import dev.cloudlet.PhaseListener
import dev.cloudlet.Plan
import dev.cloudlet.RestorePhase
import dev.cloudlet.schema
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse

class LabTest {
    private val root: Path = Paths.get(System.getProperty("cloudlet.root"))

    private fun seedCopy(): Path {
        val dir = Files.createTempDirectory("cloudlet-")
        Files.list(root.resolve("examples/seed")).use { files ->
            files.filter { it.toString().endsWith(".yaml") }
                .forEach { Files.copy(it, dir.resolve(it.fileName)) }
        }
        return dir
    }

    @Test
    fun planApplyAndAnEmptyReplan() = runBlocking {
        val lab = Lab.load(seedCopy().toString(), null)
        assertEquals("seed", lab.name())
        assertEquals(emptyList<Any>(), lab.validate())
        val plan = lab.plan()
        val vm = plan.steps().first { it.id == "hypervisor/vm/k8s-node1" }
        assertEquals("create", vm.action)
        assertEquals(plan.summary().create, plan.steps().count { it.action == "create" }.toLong())
        val events = Collections.synchronizedList(mutableListOf<Event>())
        val report = lab.apply(plan, object : EventListener {
            override fun onEvent(event: Event) {
                events.add(event)
            }
        })
        assertTrue(report.success, report.toString())
        assertEquals(emptyList<Any>(), report.failed)
        assertEquals(plan.summary().create, report.done.create)
        assertEquals("started", events.first().type)
        val done = events.first { it.type == "step_done" && it.id == "hypervisor/vm/k8s-node1" }
        assertEquals("create", done.action)
        assertTrue(done.data.contains("\"millis\":"), done.data)
        val again = lab.plan()
        assertTrue(again.isEmpty(), again.toJson())
        assertEquals(0L, again.summary().create + again.summary().update + again.summary().delete)
    }

    @Test
    fun aCancelledApplyStartsNothing() = runBlocking {
        val lab = Lab.load(seedCopy().toString(), null)
        val plan = lab.plan()
        val cancel = Cancel()
        cancel.cancel()
        val report = lab.apply(plan, null, cancel)
        assertTrue(report.cancelled)
        assertTrue(!report.success)
        assertEquals(0L, report.done.create)
    }

    @Test
    fun aStaleSavedPlanIsRefusedAsTheCliRefusesIt() = runBlocking {
        val dir = seedCopy()
        val plan = Plan.fromJson(Lab.load(dir.toString(), null).plan().toJson())
        // A fresh Lab (another process, later) applies it once; then the saved text is stale.
        assertTrue(Lab.load(dir.toString(), null).apply(plan).success)
        val e = assertThrows(CloudletException.StalePlan::class.java) {
            runBlocking { Lab.load(dir.toString(), null).apply(plan, null, null) }
        }
        assertTrue(e.message!!.contains("infrastructure changed"), e.message)
    }

    @Test
    fun anotherApplyHoldingTheLockIsTheLockedKind() = runBlocking {
        val dir = seedCopy()
        val lab = Lab.load(dir.toString(), null)
        val plan = lab.plan()
        Files.createDirectories(dir.resolve(".cloudlet"))
        val lock = dir.resolve(".cloudlet/lock").toString()
        Files.writeString(Paths.get(lock), "")
        // flock(2), as cloudlet's lock is: Java's own file locks are another kind.
        val holder = ProcessBuilder("flock", lock, "sleep", "30").start()
        try {
            var waited = 0
            while (ProcessBuilder("flock", "-n", lock, "true").start().waitFor() == 0 && waited < 200) {
                Thread.sleep(25)
                waited++
            }
            val e = assertThrows(CloudletException.Locked::class.java) { runBlocking { lab.apply(plan, null, null) } }
            assertTrue(e.message!!.contains("another apply is running"), e.message)
        } finally {
            holder.destroy()
        }
    }

    @Test
    fun destroyAndTargetsPlanWhatTheCliPlans() = runBlocking {
        val lab = Lab.load(seedCopy().toString(), null)
        assertEquals(emptyList<Any>(), lab.owned())
        val narrowed = lab.plan(targets = listOf("hypervisor/vm/k8s-node1"))
        assertEquals(listOf("hypervisor/vm/k8s-node1"), narrowed.targets())
        assertEquals(6L, narrowed.summary().create)
        assertTrue(lab.apply(narrowed).success)
        assertEquals(6, lab.owned().count { it.inLab })
        assertTrue(lab.apply(lab.plan()).success)
        val teardown = lab.plan(destroy = true)
        assertTrue(teardown.isDestroy())
        assertTrue(lab.apply(teardown).success)
        val left = lab.owned()
        assertTrue(left.any { it.id == "storage/dataset/mail" && it.retainsData }, left.toString())
        assertTrue(left.none { it.id.startsWith("cluster/") }, left.toString())
        val e = assertThrows(CloudletException.Lab::class.java) { runBlocking { lab.plan(targets = listOf("vm/x")) } }
        assertTrue(e.reason.contains("target `vm/x`"), e.reason)
    }

    @Test
    fun aFileThatCannotBeReadCarriesItsPathAndErrno() {
        val missing = Files.createTempDirectory("cloudlet-").resolve("missing.yaml").toString()
        val e = assertThrows(CloudletException.Io::class.java) { Lab.load(missing, null) }
        assertEquals(missing, e.path)
        assertEquals(2, e.errno) // ENOENT
        assertTrue(e.reason.contains("missing.yaml"), e.reason)
    }

    @Test
    fun labErrorsAreTypedAndCarryPositions() {
        val dir = Files.createTempDirectory("cloudlet-")
        Files.writeString(dir.resolve("lab.yaml"), "name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n")
        val e = assertThrows(CloudletException.Lab::class.java) { Lab.load(dir.toString(), null) }
        assertTrue(e.reason.endsWith("lab.yaml:4:16: [unknown-key] unknown key `memroy`; did you mean `memory`?"), e.reason)
        val d = e.diagnostics.single()
        assertEquals("unknown-key", d.code)
        assertEquals(4L, d.location!!.line)
        assertEquals(16L, d.location!!.column)
        assertEquals(22L, d.end!!.column)
    }

    @Test
    fun aKubeconfigIsOnlyForAClusterCloudletMakes() {
        val lab = Lab.load(seedCopy().toString(), null)
        val e = assertThrows(CloudletException.Lab::class.java) { lab.kubeconfig(3600) }
        assertTrue(e.reason.contains("does not make this lab's cluster"), e.reason)
    }

    /** The lab backs its state up hourly into a directory target `nas`. */
    private fun withBackup(dir: Path) {
        val nas = Files.createTempDirectory("cloudlet-nas-")
        Files.createDirectories(dir.resolve("secrets"))
        Files.writeString(dir.resolve("secrets/backup-key"), "jvm-backup-key\n")
        Files.writeString(
            dir.resolve("backup.yaml"),
            "backup:\n  key: {file: secrets/backup-key}\n  targets: {nas: {dir: $nas}}\n  state: {target: nas, every: 1h}\n",
        )
    }

    @Test
    fun backupsRunVerifyAndRestoreTheLab() = runBlocking {
        val dir = seedCopy()
        withBackup(dir)
        Files.writeString(dir.resolve("secrets/postmaster-password"), "pw")
        val lab = Lab.load(dir.toString(), null)
        assertTrue(lab.apply(lab.plan()).success)
        val runs = lab.backupRun()
        val state = runs.single { it.className == "state" }
        assertEquals(null, state.error)
        assertEquals("state", state.snapshot!!.className)
        val listed = lab.backupList().single()
        assertEquals("nas", listed.target)
        assertEquals(state.snapshot!!.id, listed.snapshots.last().id)
        val verified = lab.backupVerify(3)
        assertEquals(listOf(0, 1, 2, 3), verified.single().levels.map { it.level })
        assertTrue(verified.single().levels.all { it.ok }, verified.toString())
        assertThrows(CloudletException.DataLoss::class.java) { runBlocking { lab.restore("nas") } }
        dir.resolve(".cloudlet").toFile().deleteRecursively()
        val phases = Collections.synchronizedList(mutableListOf<RestorePhase>())
        val restored = Lab.load(dir.toString(), null).restore("nas", listener = object : PhaseListener {
            override fun onPhase(phase: RestorePhase) {
                phases.add(phase)
            }
        })
        assertEquals(8, phases.size, restored.toString())
        assertEquals("volumes", phases[4].name)
        assertEquals(phases.map { it.name }, restored.phases.map { it.name })
        assertEquals("state", restored.windows.single().className)
        assertEquals(state.snapshot!!.id, restored.windows.single().snapshot)
    }

    @Test
    fun doctorReportsABackupThatNeverRan() = runBlocking {
        val dir = seedCopy()
        withBackup(dir)
        val lab = Lab.load(dir.toString(), null)
        assertTrue(lab.apply(lab.plan()).success)
        val found = lab.doctor(5.0)
        assertEquals(1L, found.format)
        assertEquals("fail", found.status)
        val fresh = found.findings.single { it.check == "backup.fresh" }
        assertEquals("fail", fresh.status)
        assertTrue(fresh.fix != null, fresh.toString())
        lab.backupRun()
        val after = lab.doctor()
        assertEquals("ok", after.status, after.toString())
    }

    @Test
    fun schemaIsJson() {
        assertTrue(schema().contains("\"title\":\"cloudlet lab\""))
    }

    @Test
    fun theBootServiceServesOneInstallThenStops() = runBlocking {
        val dir = seedCopy()
        val lab = Lab.load(dir.toString(), dir.resolve("state").toString())
        val node1 = lab.pxeStatus().single { it.name == "k8s-node1" }
        assertEquals(null, node1.state)
        val mac = node1.mac.replace(':', '-')
        val events = Collections.synchronizedList(mutableListOf<BootEvent>())
        val svc = lab.pxeServe(
            BootOptions(address = "10.0.20.11", proxyDhcp = false, httpPort = 0, tftpPort = 0, root = dir.toString()),
            object : BootListener {
                override fun onBoot(event: BootEvent) {
                    events.add(event)
                }
            },
        )
        val http = HttpClient.newHttpClient()
        fun get(path: String, body: String? = null): HttpResponse<String> {
            val b = HttpRequest.newBuilder(URI.create("http://${svc.httpAddress()}$path"))
            if (body != null) b.POST(HttpRequest.BodyPublishers.ofString(body))
            return http.send(b.build(), HttpResponse.BodyHandlers.ofString())
        }
        val script = get("/ipxe/$mac").body()
        assertTrue(script.startsWith("#!ipxe\n"), script)
        val token = script.substringAfter("/install/k8s-node1/").substringBefore("/")
        val booting = lab.pxeStatus().single { it.name == "k8s-node1" }.state!!
        assertEquals("booting", booting.phase)
        assertTrue(!booting.toString().contains(token), booting.toString())
        val ks = get("/install/k8s-node1/$token/config")
        assertEquals(200, ks.statusCode())
        assertTrue(ks.body().contains("--bootproto=static --ip=10.0.20.11"), ks.body())
        assertEquals(403, get("/install/k8s-node2/$token/config").statusCode())
        assertEquals(200, get("/install/k8s-node1/$token/done", "installed").statusCode())
        svc.stop()
        var waited = 0
        while (events.none { it.event == "reported" } && waited < 100) {
            Thread.sleep(50)
            waited++
        }
        assertEquals(listOf("boot", "config", "refused", "reported"), events.map { it.event })
        // The refusal names the machine whose install config was asked for with another's token.
        assertEquals(listOf("k8s-node1", "k8s-node1", "k8s-node2", "k8s-node1"), events.map { it.machine })
        assertEquals("{\"answer\":\"install\",\"via\":\"ipxe\"}", events[0].data)
        val installed = lab.pxeStatus().single { it.name == "k8s-node1" }.state!!
        assertEquals("installed", installed.phase)
        assertEquals(listOf("booting", "installing", "installed"), installed.history.map { it.phase }.takeLast(3))
        lab.pxeReinstall("k8s-node1")
        assertEquals("discovered", lab.pxeStatus().single { it.name == "k8s-node1" }.state!!.phase)
        val bad = assertThrows(CloudletException.Boot::class.java) { runBlocking { lab.pxeServe(BootOptions(httpPort = 70000)) } }
        assertTrue(bad.reason.contains("boot options"), bad.reason)
        val e = assertThrows(CloudletException.Boot::class.java) { runBlocking { lab.pxeServe(BootOptions(proxyDhcp = false)) } }
        assertTrue(e.message!!.contains("binding HTTP on 10.0.10.20"), e.message)
    }
}
