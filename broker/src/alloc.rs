//! The process allocator: the system allocator, except that requests of a
//! gigabyte or more are served by `mmap` with `MAP_NORESERVE`.
//!
//! Why: the `kafka-protocol` decoder reserves `Vec` capacity for an array
//! from the element count on the wire before decoding any element (an open
//! upstream issue). A few-byte request claiming two billion elements then
//! asks for a 150 GB allocation; the system allocator refuses it and Rust
//! aborts the process. A no-reserve mapping costs only address space: the
//! decoder fails on the missing bytes, the connection is closed, and the
//! mapping is released without a page ever being touched. Legitimate
//! allocations are bounded by `socket.request.max.bytes` and never get here.

use std::alloc::{GlobalAlloc, Layout, System};

/// Tells glibc's allocator to keep the memory the broker frees for reuse
/// instead of handing it back to the kernel: request and response buffers
/// of up to 32 MiB come from its heaps (not a fresh `mmap` each), and free
/// memory is trimmed from a heap only beyond 128 MiB. Why: memory handed
/// back is faulted in and zeroed again by the kernel on the next request,
/// and on a virtual machine that reports free pages to its host each such
/// page costs a host fault too — measured as a tenth of the broker's CPU
/// under a 1 MiB-batch produce load.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

const LARGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct BrokerAllocator;

// SAFETY: small requests are forwarded to `System`; large ones are page-aligned
// anonymous mappings (zero-filled), released with the same length.
unsafe impl GlobalAlloc for BrokerAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < LARGE || layout.align() > PAGE {
            return System.alloc(layout);
        }
        map(layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < LARGE || layout.align() > PAGE {
            return System.alloc_zeroed(layout);
        }
        map(layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < LARGE || layout.align() > PAGE {
            return System.dealloc(ptr, layout);
        }
        libc::munmap(ptr.cast(), layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < LARGE && new_size < LARGE {
            return System.realloc(ptr, layout, new_size);
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

unsafe fn map(size: usize) -> *mut u8 {
    let ptr = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}
