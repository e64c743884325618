// Java's view of a Lab: each of Lab's suspend functions as a CompletableFuture (join() or
// get() for a blocking call), static constructors, overloads for the optional arguments.
// Conversion only: every call goes straight to the Lab uniffi generates.
package dev.cloudlet

import java.util.concurrent.CompletableFuture
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.future.future

/**
 * A loaded lab for Java callers. A future fails with the [CloudletException] the call threw
 * (wrapped in a CompletionException or ExecutionException, as futures do); cancelling a
 * future cancels the call.
 */
class JavaLab(
    /** The Kotlin API underneath, for the synchronous calls and the records it shares. */
    val lab: Lab,
) : AutoCloseable {
    companion object {
        private val scope = CoroutineScope(SupervisorJob() + Dispatchers.IO)

        /** Loads a lab file or directory; `stateDir` overrides where state and output go. */
        @JvmStatic
        @JvmOverloads
        @Throws(CloudletException::class)
        fun load(path: String, stateDir: String? = null): JavaLab = JavaLab(Lab.load(path, stateDir))

        /** The JSON Schema of the lab format. */
        @JvmStatic
        fun schema(): String = dev.cloudlet.schema()

        /** Stops a boot service that [pxeServe] started and waits for it to end. */
        @JvmStatic
        fun stop(service: BootService): CompletableFuture<Unit> = call { service.stop() }

        private fun <T> call(block: suspend () -> T): CompletableFuture<T> = scope.future { block() }
    }

    /** The lab's name. */
    fun name(): String = lab.name()

    /** Every diagnostic of the whole lab (empty: it is valid). */
    @Throws(CloudletException::class)
    fun validate(): List<Diagnostic> = lab.validate()

    /** The plan of the whole lab. */
    fun plan(): CompletableFuture<Plan> = call { lab.plan() }

    /** The plan; `destroy` removes everything the lab owns, `targets` narrows it. */
    fun plan(destroy: Boolean, targets: List<String>): CompletableFuture<Plan> = call { lab.plan(destroy, targets) }

    /** What cloudlet owns in the lab's backends. */
    fun owned(): CompletableFuture<List<Owned>> = call { lab.owned() }

    /** Applies a plan. */
    fun apply(plan: Plan): CompletableFuture<ApplyReport> = call { lab.apply(plan) }

    /** Applies a plan; `listener` gets each event, `cancel` (may be null) stops new steps. */
    @JvmOverloads
    fun apply(
        plan: Plan,
        listener: EventListener?,
        cancel: Cancel?,
        allowDataLoss: Boolean = false,
    ): CompletableFuture<ApplyReport> = call { lab.apply(plan, listener, cancel, allowDataLoss) }

    /** Writes every resource under `dir`; the number written. */
    fun render(dir: String): CompletableFuture<Long> = call { lab.render(dir) }

    /** Starts the network boot service in the background. */
    @JvmOverloads
    fun pxeServe(options: BootOptions, listener: BootListener? = null): CompletableFuture<BootService> =
        call { lab.pxeServe(options, listener) }

    /** Each network-installed machine and its install state. */
    @Throws(CloudletException::class)
    fun pxeStatus(): List<PxeMachine> = lab.pxeStatus()

    /** Installs `machine` again at its next network boot. */
    @Throws(CloudletException::class)
    fun pxeReinstall(machine: String) = lab.pxeReinstall(machine)

    /** An admin kubeconfig valid for `validSeconds`; it holds a private key. */
    @Throws(CloudletException::class)
    fun kubeconfig(validSeconds: Long): String = lab.kubeconfig(validSeconds)

    /** Backs up each class the lab declares (or those in `classes`) now. */
    @JvmOverloads
    fun backupRun(classes: List<String> = listOf()): CompletableFuture<List<BackupRun>> = call { lab.backupRun(classes) }

    /** The snapshots each backup target holds. */
    fun backupList(): CompletableFuture<List<TargetSnapshots>> = call { lab.backupList() }

    /** Each class's climb up the verification ladder to `level`. */
    @JvmOverloads
    fun backupVerify(level: Int = 3): CompletableFuture<List<Verified>> = call { lab.backupVerify(level) }

    /** Rebuilds the lab from the backup target `from`. */
    @JvmOverloads
    fun restore(
        from: String,
        force: Boolean = false,
        resume: Boolean = false,
        listener: PhaseListener? = null,
    ): CompletableFuture<Restored> = call { lab.restore(from, force, resume, listener) }

    /** The doctor's findings, each check within `timeoutSeconds`. */
    @JvmOverloads
    fun doctor(timeoutSeconds: Double = 10.0): CompletableFuture<Diagnosis> = call { lab.doctor(timeoutSeconds) }

    /** The lab's volumes as the NAS has them. */
    fun storageStatus(): CompletableFuture<List<VolumeStatus>> = call { lab.storageStatus() }

    /** Frees the native lab. */
    override fun close() = lab.close()
}
