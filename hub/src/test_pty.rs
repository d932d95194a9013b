//! Test support (compiled for tests only): a PTY pair with a simulated OSDP device
//! ([`osdp::pd::PeripheralDevice`]) answering on the master side, so the bus
//! driver and the scanner run against a real tty without hardware.
//!
//! `VirtualPd::start(config)` opens the pair, starts a thread that feeds the
//! device everything written to the slave and writes its replies back, and
//! returns the slave's path for the code under test to open. The thread ends
//! when the last slave descriptor is closed (the master then reads EIO).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use osdp::pd::{PdConfig, PeripheralDevice};

/// A simulated device behind a PTY.
pub struct VirtualPd {
    /// Path of the slave side, e.g. `/dev/pts/4`.
    pub path: String,
    /// The device, to queue reports or look at its state.
    pub device: Arc<Mutex<PeripheralDevice>>,
    /// The slave descriptor opened with the pair; drop it once the code
    /// under test has opened the path, so closing that ends the thread.
    pub slave: Option<OwnedFd>,
}

/// Opens a PTY pair: (master, slave, slave path).
#[allow(unsafe_code)]
pub fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd, String)> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: both out-pointers point to live c_ints; a null name, termios
    // and window size are documented as "use defaults".
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded and returned two new descriptors that
    // nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))?;
    Ok((master, slave, path.to_string_lossy().into_owned()))
}

impl VirtualPd {
    /// Starts a device with `config` behind a new PTY.
    pub fn start(config: PdConfig) -> std::io::Result<VirtualPd> {
        let (master, slave, path) = open_pty()?;
        let device = Arc::new(Mutex::new(PeripheralDevice::new(config)));
        let mut reader = File::from(master);
        let mut writer = reader.try_clone()?;
        let dev = Arc::clone(&device);
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let replies: Vec<Vec<u8>> = {
                    let Ok(mut pd) = dev.lock() else { return };
                    pd.handle_input(&buf[..n], Instant::now());
                    std::iter::from_fn(|| pd.poll_transmit()).collect()
                };
                for r in replies {
                    if writer.write_all(&r).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(VirtualPd {
            path,
            device,
            slave: Some(slave),
        })
    }
}
