//! Reading file regions into fresh buffers without zeroing them first: a
//! fetch reads every byte it sends, so filling the buffer with zeros before
//! `pread` overwrites them is a wasted pass over memory.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Reads exactly `len` bytes at `position` into a new buffer.
pub fn read_exact_at(file: &File, len: usize, position: u64) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let filled = buf.len();
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` is the vector's own unused capacity, at least
        // `len - filled` bytes long; pread writes at most that many bytes
        // there and reports how many it wrote.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                len - filled,
                (position + filled as u64) as libc::off_t,
            )
        };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => {
                // SAFETY: pread initialized the next `n` bytes.
                unsafe { buf.set_len(filled + n as usize) };
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_the_region_and_fails_past_the_end() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        assert_eq!(
            read_exact_at(&file, 5_000, 1_000).unwrap(),
            &data[1_000..6_000]
        );
        assert_eq!(read_exact_at(&file, 0, 0).unwrap(), Vec::<u8>::new());
        let error = read_exact_at(&file, 10, 99_995).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
