// The JVM binding as a Kotlin user calls it: suspend functions, a listener for events,
// errors as CloudletException subclasses.
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.Paths
import java.util.Collections
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import uniffi.cloudlet_jvm.Cancel
import uniffi.cloudlet_jvm.CloudletException
import uniffi.cloudlet_jvm.EventListener
import uniffi.cloudlet_jvm.Lab
import uniffi.cloudlet_jvm.schema
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
        assertEquals("[]", lab.validate())
        val plan = lab.plan()
        assertTrue(plan.contains("\"action\":\"create\""))
        val events = Collections.synchronizedList(mutableListOf<String>())
        val report = lab.apply(plan, object : EventListener {
            override fun onEvent(event: String) {
                events.add(event)
            }
        }, null)
        assertTrue(report.contains("\"failed\":[]"), report)
        assertTrue(events.first().contains("\"type\":\"started\""))
        assertTrue(events.any { it.contains("\"type\":\"step_done\"") })
        val again = lab.plan()
        assertTrue(again.contains("\"create\":0,\"update\":0,\"delete\":0"), again)
    }

    @Test
    fun aCancelledApplyStartsNothing() = runBlocking {
        val lab = Lab.load(seedCopy().toString(), null)
        val plan = lab.plan()
        val cancel = Cancel()
        cancel.cancel()
        val report = lab.apply(plan, null, cancel)
        assertTrue(report.contains("\"cancelled\":true"), report)
        assertTrue(report.contains("\"create\":0"), report)
    }

    @Test
    fun aStaleSavedPlanIsRefusedAsTheCliRefusesIt() = runBlocking {
        val dir = seedCopy()
        val plan = Lab.load(dir.toString(), null).plan()
        // A fresh Lab (another process, later) applies it once; then the saved text is stale.
        assertTrue(Lab.load(dir.toString(), null).apply(plan, null, null).contains("\"failed\":[]"))
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
        assertEquals("[]", lab.owned())
        val narrowed = lab.plan(targets = listOf("hypervisor/vm/k8s-node1"))
        assertTrue(narrowed.contains("\"targets\":[\"hypervisor/vm/k8s-node1\"]"), narrowed)
        assertTrue(narrowed.contains("\"create\":6,"), narrowed)
        assertTrue(lab.apply(narrowed, null, null).contains("\"failed\":[]"))
        assertEquals(6, Regex("\"in_lab\":true").findAll(lab.owned()).count())
        assertTrue(lab.apply(lab.plan(), null, null).contains("\"failed\":[]"))
        val teardown = lab.plan(destroy = true)
        assertTrue(teardown.contains("\"destroy\":true"), teardown)
        assertTrue(lab.apply(teardown, null, null).contains("\"failed\":[]"))
        assertTrue(lab.owned().contains("storage/dataset/mail"))
        assertTrue(!lab.owned().contains("cluster/"))
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
        assertTrue(e.diagnostics.contains("\"code\":\"unknown-key\""))
    }

    @Test
    fun aKubeconfigIsOnlyForAClusterCloudletMakes() {
        val lab = Lab.load(seedCopy().toString(), null)
        val e = assertThrows(CloudletException.Lab::class.java) { lab.kubeconfig(3600u) }
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
        assertTrue(lab.apply(lab.plan(), null, null).contains("\"failed\":[]"))
        val runs = lab.backupRun(listOf())
        assertTrue(runs.contains("\"class\":\"state\"") && runs.contains("\"error\":null"), runs)
        val verified = lab.backupVerify(3u)
        assertEquals(4, Regex("\"ok\":true").findAll(verified).count(), verified)
        assertThrows(CloudletException.DataLoss::class.java) { runBlocking { lab.restore("nas", false, false, null) } }
        dir.resolve(".cloudlet").toFile().deleteRecursively()
        val phases = Collections.synchronizedList(mutableListOf<String>())
        val restored = Lab.load(dir.toString(), null).restore("nas", false, false, object : EventListener {
            override fun onEvent(event: String) {
                phases.add(event)
            }
        })
        assertEquals(8, phases.size, restored)
        assertTrue(phases[4].contains("\"name\":\"volumes\""), phases[4])
        assertTrue(restored.contains("\"class\":\"state\""), restored)
    }

    @Test
    fun doctorReportsABackupThatNeverRan() = runBlocking {
        val dir = seedCopy()
        withBackup(dir)
        val lab = Lab.load(dir.toString(), null)
        assertTrue(lab.apply(lab.plan(), null, null).contains("\"failed\":[]"))
        val found = lab.doctor(5.0)
        assertTrue(found.contains("\"format\":1") && found.contains("\"status\":\"fail\""), found)
        assertTrue(found.contains("\"check\":\"backup.fresh\""), found)
        lab.backupRun(listOf())
        val after = lab.doctor(5.0)
        assertTrue(after.contains("\"status\":\"ok\",\"counts\""), after)
    }

    @Test
    fun schemaIsJson() {
        assertTrue(schema().contains("\"title\":\"cloudlet lab\""))
    }

    @Test
    fun theBootServiceServesOneInstallThenStops() = runBlocking {
        val dir = seedCopy()
        val lab = Lab.load(dir.toString(), dir.resolve("state").toString())
        val mac = Regex("\"name\":\"k8s-node1\",\"mac\":\"([0-9a-f:]+)\"")
            .find(lab.pxeStatus())!!.groupValues[1].replace(':', '-')
        val events = Collections.synchronizedList(mutableListOf<String>())
        val svc = lab.pxeServe(
            "{\"address\":\"10.0.20.11\",\"proxy_dhcp\":false,\"http_port\":0,\"tftp_port\":0,\"root\":\"$dir\"}",
            object : EventListener {
                override fun onEvent(event: String) {
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
        val ks = get("/install/k8s-node1/$token/config")
        assertEquals(200, ks.statusCode())
        assertTrue(ks.body().contains("--bootproto=static --ip=10.0.20.11"), ks.body())
        assertEquals(403, get("/install/k8s-node2/$token/config").statusCode())
        assertEquals(200, get("/install/k8s-node1/$token/done", "installed").statusCode())
        svc.stop()
        var waited = 0
        while (events.none { it.contains("\"event\":\"reported\"") } && waited < 100) {
            Thread.sleep(50)
            waited++
        }
        assertEquals(listOf("boot", "config", "refused", "reported"), events.map { Regex("\"event\":\"(\\w+)\"").find(it)!!.groupValues[1] })
        assertTrue(lab.pxeStatus().contains("\"phase\":\"installed\""), lab.pxeStatus())
        lab.pxeReinstall("k8s-node1")
        assertTrue(lab.pxeStatus().contains("\"phase\":\"discovered\""), lab.pxeStatus())
        val e = assertThrows(CloudletException.Boot::class.java) { runBlocking { lab.pxeServe("{\"proxy_dhcp\":false}", null) } }
        assertTrue(e.message!!.contains("binding HTTP on 10.0.10.20"), e.message)
    }
}
