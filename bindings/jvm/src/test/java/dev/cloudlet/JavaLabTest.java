// The JVM binding as a Java user calls it: JavaLab's CompletableFutures, the records'
// getters, CloudletException subclasses inside the futures' exceptions.
package dev.cloudlet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

class JavaLabTest {
    private static Path seedCopy() throws IOException {
        Path dir = Files.createTempDirectory("cloudlet-java-");
        try (Stream<Path> files = Files.list(Paths.get(System.getProperty("cloudlet.root"), "examples", "seed"))) {
            for (Path f : (Iterable<Path>) files::iterator) {
                if (f.toString().endsWith(".yaml")) {
                    Files.copy(f, dir.resolve(f.getFileName()));
                }
            }
        }
        return dir;
    }

    @Test
    void planApplyAndAnEmptyReplanFromJava() throws Exception {
        try (JavaLab lab = JavaLab.load(seedCopy().toString())) {
            assertEquals("seed", lab.name());
            assertTrue(lab.validate().isEmpty());
            Plan plan = lab.plan().get();
            assertTrue(plan.summary().getCreate() > 0);
            Step vm = plan.steps().stream()
                    .filter(s -> s.getId().equals("hypervisor/vm/k8s-node1"))
                    .findFirst()
                    .orElseThrow();
            assertEquals("create", vm.getAction());
            List<Event> events = Collections.synchronizedList(new ArrayList<>());
            ApplyReport report = lab.apply(plan, events::add, null).join();
            assertTrue(report.getSuccess(), report.toString());
            assertEquals(plan.summary().getCreate(), report.getDone().getCreate());
            assertEquals("started", events.get(0).getType());
            assertTrue(lab.plan().get().isEmpty());
            List<Owned> owned = lab.owned().get();
            assertTrue(!owned.isEmpty() && owned.stream().allMatch(Owned::getInLab), owned.toString());
        }
    }

    @Test
    void aTargetThatIsNotInTheLabFailsTheFutureWithALabError() throws Exception {
        try (JavaLab lab = JavaLab.load(seedCopy().toString(), null)) {
            CompletionException e = assertThrows(CompletionException.class,
                    () -> lab.plan(false, List.of("vm/x")).join());
            CloudletException.Lab cause = assertInstanceOf(CloudletException.Lab.class, e.getCause());
            assertTrue(cause.getReason().contains("target `vm/x`"), cause.getReason());
        }
    }

    @Test
    void aLabFileWithAMistakeIsALabErrorWithItsPosition() throws Exception {
        Path dir = Files.createTempDirectory("cloudlet-java-");
        Files.writeString(dir.resolve("lab.yaml"), "name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n");
        CloudletException.Lab e = assertThrows(CloudletException.Lab.class, () -> JavaLab.load(dir.toString()));
        Diagnostic d = e.getDiagnostics().get(0);
        assertEquals("unknown-key", d.getCode());
        assertEquals(4L, d.getLocation().getLine());
        assertEquals(16L, d.getLocation().getColumn());
        assertTrue(JavaLab.schema().contains("\"title\":\"cloudlet lab\""));
    }
}
