//! The TUN device: the overlay interface the kernel routes member traffic into.
//!
//! With offloads (Linux `IFF_VNET_HDR` and TSO/USO), one read can return a TCP or UDP
//! super-packet of up to 64 KiB that tun-rs splits into MTU-sized packets, and writes coalesce
//! consecutive segments of one flow back into super-packets (GRO), so the kernel's TCP stack
//! sees few, large packets. When the kernel refuses offloads, or they are turned off, the device
//! reads and writes one packet at a time; both paths go through the same two calls here.

use std::io;
use std::net::Ipv4Addr;

use tun_rs::{AsyncDevice, DeviceBuilder, DeviceImpl, GROTable, VIRTIO_NET_HDR_LEN};

/// Space kept before each packet in the buffers handed to [`Tun::write_batch`]; the virtio
/// header is written there when offloads are on.
pub const WRITE_HEADROOM: usize = VIRTIO_NET_HDR_LEN;

/// The largest packet a read may return before splitting (a 64 KiB super-packet).
pub const MAX_SUPER_PACKET: usize = 65_535;

/// Which read [`Tun::read_batch`] makes.
#[derive(Debug, Clone, Copy)]
pub enum Read {
    /// One the reactor has seen the device ready for.
    Ready,
    /// One right away, whatever the reactor last saw: the thread has just written to the
    /// device, and the kernel may have answered inside the write (an echo's reply, a TCP
    /// acknowledgement), which the reactor would report only on its next wait.
    Now,
}

/// Whether a device error means the device is gone.
pub fn fatal(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBADF | libc::EBADFD))
}

/// An open TUN device.
pub struct Tun {
    device: AsyncDevice,
    offload: bool,
    name: String,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("offload", &self.offload)
            .finish()
    }
}

/// Why the device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    #[error(
        "cannot create TUN interface {name}: {source} (weft needs root or CAP_NET_ADMIN and /dev/net/tun)"
    )]
    Create { name: String, source: io::Error },
    #[error("cannot change address {address}/{prefix} on {name}: {source}")]
    Address {
        name: String,
        address: Ipv4Addr,
        prefix: u8,
        source: io::Error,
    },
}

impl Tun {
    /// Creates interface `name` with `mtu`, up, with offloads when `offload` is asked for and
    /// the kernel accepts them, else without.
    pub fn open(name: &str, mtu: u16, offload: bool) -> Result<Tun, TunError> {
        let build = |offload: bool| {
            DeviceBuilder::new()
                .name(name)
                .mtu(mtu)
                .with(|b| {
                    b.offload(offload);
                })
                .enable(true)
                .build_async()
        };
        let device = match build(offload) {
            Ok(device) => device,
            Err(e) if offload => {
                tracing::warn!(interface = name, error = %e, "the kernel refused TUN offloads; using plain packets");
                build(false).map_err(|source| TunError::Create {
                    name: name.into(),
                    source,
                })?
            }
            Err(source) => {
                return Err(TunError::Create {
                    name: name.into(),
                    source,
                });
            }
        };
        let offload = device.tcp_gso();
        tracing::info!(interface = name, mtu, offload, "TUN interface up");
        Ok(Tun {
            device,
            offload,
            name: name.into(),
        })
    }

    /// Whether TSO/GRO offloads are on.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Sets the interface's overlay address and prefix (replacing any earlier one).
    pub fn set_address(&self, address: Ipv4Addr, prefix: u8) -> Result<(), TunError> {
        self.device
            .set_network_address(address, prefix, None)
            .map_err(|source| TunError::Address {
                name: self.name.clone(),
                address,
                prefix,
                source,
            })
    }

    /// Removes the overlay address `address` (this node no longer holds it).
    pub fn remove_address(&self, address: Ipv4Addr) -> Result<(), TunError> {
        self.device
            .remove_address(address.into())
            .map_err(|source| TunError::Address {
                name: self.name.clone(),
                address,
                prefix: 32,
                source,
            })
    }

    /// Waits until the reactor has seen the device readable (a read may still find nothing).
    pub async fn readable(&self) -> io::Result<()> {
        self.device.readable().await
    }

    /// Reads packets without waiting: each lands in `bufs[i][offset..offset + sizes[i]]`;
    /// returns how many, or `WouldBlock` (for [`Read::Ready`], also when the reactor has not
    /// seen the device readable since a read last found it empty). `scratch` holds a whole
    /// super-packet (at least [`MAX_SUPER_PACKET`] plus a virtio header).
    pub fn read_batch(
        &self,
        read: Read,
        scratch: &mut [u8],
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        match read {
            Read::Ready => self.device.try_recv_multiple(scratch, bufs, sizes, offset),
            Read::Now => DeviceImpl::recv_multiple(&self.device, scratch, bufs, sizes, offset),
        }
    }

    /// Writes the packets at `bufs[i][offset..]` (`offset >= WRITE_HEADROOM`), coalescing
    /// segments of one flow when offloads are on.
    pub async fn write_batch(
        &self,
        gro: &mut GROTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        self.device.send_multiple(gro, bufs, offset).await
    }

    /// Writes one packet that sits at `buf[WRITE_HEADROOM..]` (headroom zeroed: no offload).
    pub async fn write_one(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offload {
            buf[..WRITE_HEADROOM].fill(0);
            self.device.send(buf).await
        } else {
            self.device.send(&buf[WRITE_HEADROOM..]).await
        }
    }
}
