"""The real-boot suite's console watch: up to three restarts per boot after a panic, then a fast failure."""

from __future__ import annotations

from tests.e2e.vm import Console

BANNER = "[    0.000000] Linux version 6.12.117+deb13-amd64 (debian-kernel@lists.debian.org)"
OOPS = "[    3.204237] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI"


class FakeVM:
    def __init__(self, console):
        self.console = console
        self.restarts = self.kills = 0

    def restart(self):
        self.restarts += 1

    def kill(self):
        self.kills += 1


def test_a_panic_restarts_the_boot_and_the_fourth_one_in_the_same_boot_fails(tmp_path):
    vm = FakeVM(tmp_path / "console.log")
    vm.console.write_text("the end of the console\n")
    watch = Console(vm)
    watch.line(BANNER)
    for attempt in range(Console.RESTARTS):
        watch.line(OOPS)
        assert (vm.restarts, vm.kills, watch.failure) == (attempt + 1, 0, None)
        watch.line(BANNER)  # the restarted boot's banner: still the same boot
        watch.line("[    2.0] sched_clock: Marking stable")
    watch.line(OOPS)
    assert (vm.restarts, vm.kills) == (3, 1)
    assert watch.failure.startswith("the guest panicked 4 times in a row (Oops: int3: 0000 [#1] PREEMPT SMP NOPTI)")
    assert "the end of the console" in watch.failure


def test_a_later_boot_gets_its_own_retry(tmp_path):
    vm = FakeVM(tmp_path / "console.log")
    watch = Console(vm)
    for line in (BANNER, OOPS, BANNER, "login: ", BANNER, OOPS, BANNER):
        watch.line(line)
    assert (vm.restarts, vm.kills, watch.failure) == (2, 0, None)
    assert watch.panics == [OOPS.split("] ", 1)[1]] * 2


def test_a_clean_boot_changes_nothing(tmp_path):
    vm = FakeVM(tmp_path / "console.log")
    watch = Console(vm)
    for line in (BANNER, "[    4.9] Run /init as init process", "Welcome to Debian GNU/Linux 13 (trixie)!"):
        watch.line(line)
    assert (vm.restarts, vm.kills, watch.failure, watch.panics) == (0, 0, None, [])
