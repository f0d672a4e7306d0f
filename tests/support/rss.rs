//! The peak memory of one `slotfill` run, as the kernel counts it: the process
//! runs under ptrace and is stopped just before it exits to read its `VmHWM`.

use std::fs::File;
use std::process::Stdio;

use super::{Run, Workspace};

/// Runs slotfill to completion; returns its outcome and its peak resident set
/// in KiB. slotfill runs under ptrace, stopped just before it exits to read
/// `VmHWM` from `/proc/PID/status`: the high-water mark of its own address
/// space. (`wait4`'s `ru_maxrss` would not do: after a vfork-style spawn it
/// includes the peak of the test process, which holds the 60 MiB body.)
pub fn run_measured(ws: &Workspace, args: &[&str]) -> (Run, u64) {
    use std::os::unix::process::CommandExt;
    let (out_path, err_path) = (ws.path().join("stdout.txt"), ws.path().join("stderr.txt"));
    let mut command = ws.command(args);
    command
        .stdout(Stdio::from(File::create(&out_path).unwrap()))
        .stderr(Stdio::from(File::create(&err_path).unwrap()));
    // SAFETY: one async-signal-safe syscall between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let null = std::ptr::null_mut::<libc::c_void>();
            if libc::ptrace(libc::PTRACE_TRACEME, 0, null, null) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // This thread forked slotfill, so it is its tracer: every ptrace call below is made here.
    let child = command.spawn().expect("spawn slotfill under ptrace");
    let pid = child.id() as libc::pid_t;
    let null = std::ptr::null_mut::<libc::c_void>();
    let mut status = 0;
    let wait = |status: &mut i32| {
        // SAFETY: waits for our own child.
        let waited = unsafe { libc::waitpid(pid, status, 0) };
        assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
    };
    wait(&mut status);
    assert!(
        libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGTRAP,
        "slotfill did not stop at exec: status {status:#x}"
    );
    let options = (libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL) as usize;
    // SAFETY: ptrace requests on our stopped tracee.
    let set = unsafe {
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            null,
            options as *mut libc::c_void,
        )
    };
    assert_eq!(
        set,
        0,
        "PTRACE_SETOPTIONS: {}",
        std::io::Error::last_os_error()
    );
    let mut peak_kib = None;
    let mut deliver = 0usize;
    loop {
        // SAFETY: as above; `deliver` passes on a signal the tracee received.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, null, deliver as *mut libc::c_void) };
        wait(&mut status);
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        deliver = 0;
        if status >> 8 == (libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8)) {
            // About to exit: the address space, and its high-water mark, still exist.
            let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            peak_kib = proc_status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        } else if libc::WIFSTOPPED(status) {
            deliver = libc::WSTOPSIG(status) as usize;
        }
    }
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let run = Run {
        code,
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    };
    let peak_kib = peak_kib.unwrap_or_else(|| panic!("no VmHWM read before exit: {run:?}"));
    (run, peak_kib)
}
