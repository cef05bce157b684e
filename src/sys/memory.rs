//! The agent's own heap, kept from creeping.
//!
//! Found with heaptrack and /proc/<pid>/smaps on a run of 0.1 s cycles (docs/benchmarks.md#soak):
//! the live heap is flat (≈ 370 KiB from the first minute on), yet RSS grew ~100 bytes per cycle
//! for over an hour of 1 s cycles before levelling off about 1 MiB higher (the ~13 kB/min at 1 s
//! that was reported, watched for 30 minutes). The growth was in glibc's malloc
//! arenas: each thread that allocates (two runtime workers, the GPU thread) gets an arena of its
//! own, and every cycle's few thousand short-lived allocations, freed on another thread than the
//! one that made them, left free memory behind that the arenas kept resident. Two settings halve
//! it and end it sooner (the soak then shows RSS flat after ~4,000 cycles): one arena for the
//! whole process (the agent allocates little, so there is nothing to contend for), and returning
//! free pages to the kernel every [`TRIM_EVERY`] node cycles.

/// Node cycles between two trims: once a minute at a 1 s interval; a trim of this heap costs
/// tens of microseconds.
pub(crate) const TRIM_EVERY: u64 = 60;

/// One malloc arena for the process, and a fixed mmap threshold of 256 KiB: glibc otherwise
/// raises the threshold to the size of the largest block freed (up to 32 MiB), after which a
/// cycle's request buffer (1.8 MB at 1000 containers) comes from the heap and leaves it
/// fragmented and held; mapped, it goes back to the kernel once sent. One arena also keeps a
/// request built on one thread and compressed on another from being held twice (1000
/// containers: 50.7 → 38.4 MiB peak; docs/benchmarks.md#memory).
///
/// Call once at start, before the runtime's threads exist.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; both are documented glibc options.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// Gives free heap pages back to the kernel.
pub(crate) fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Unmaps the pages of the agent's own relocation table (`.rela.dyn`): the dynamic loader reads
/// it once before `main` to relocate the position-independent binary, and nothing reads it
/// again, yet its pages stay mapped and count in the RSS: 288 KB of the 8.8 MB release binary,
/// about 3 % of the agent's RSS at 100 containers (docs/benchmarks.md#memory). Only whole pages
/// inside the table are released, only from a read-only segment (never a page the loader
/// wrote), so the worst a later read could meet is a page fault that maps the same bytes back
/// from the file. Returns the bytes released (0 where the table is not found or too small).
pub fn release_relocations() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    {
        let mut released = 0usize;
        // SAFETY: the callback only reads what the loader hands it (the main program's program
        // headers and its dynamic section, both mapped for the life of the process) and
        // releases pages with madvise, which cannot make memory unsafe to use: a read-only
        // private file mapping refaults the same bytes.
        unsafe {
            libc::dl_iterate_phdr(Some(main_program), (&mut released as *mut usize).cast());
        }
        released
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
    0
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
unsafe extern "C" fn main_program(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    out: *mut libc::c_void,
) -> libc::c_int {
    /// An entry of the dynamic section (`Elf64_Dyn`).
    #[repr(C)]
    struct Dyn {
        tag: i64,
        val: u64,
    }
    const DT_NULL: i64 = 0;
    const DT_RELA: i64 = 7;
    const DT_RELASZ: i64 = 8;
    const PF_W: u32 = 2;
    // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the call; the first
    // object it reports is the main program.
    let info = unsafe { &*info };
    if info.dlpi_phdr.is_null() {
        return 1;
    }
    let base = info.dlpi_addr as usize;
    // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers mapped with the program.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else {
        return 1;
    };
    let (mut rela, mut size) = (0usize, 0usize);
    let mut entry = (base + dynamic.p_vaddr as usize) as *const Dyn;
    for _ in 0..dynamic.p_memsz as usize / size_of::<Dyn>() {
        // SAFETY: within the PT_DYNAMIC segment, which the loader mapped and ends with DT_NULL.
        let d = unsafe { &*entry };
        match d.tag {
            DT_NULL => break,
            DT_RELA => rela = d.val as usize,
            DT_RELASZ => size = d.val as usize,
            _ => {}
        }
        entry = entry.wrapping_add(1);
    }
    if rela == 0 || size == 0 {
        return 1;
    }
    // glibc rewrites the entry to the loaded address on this architecture; take either.
    if rela < base {
        rela += base;
    }
    // The table must lie inside one loaded segment that is not writable: nothing the loader
    // changed, nothing shared with RELRO.
    let read_only = phdrs.iter().any(|p| {
        let start = base + p.p_vaddr as usize;
        p.p_type == libc::PT_LOAD
            && p.p_flags & PF_W == 0
            && start <= rela
            && rela + size <= start + p.p_memsz as usize
    });
    if !read_only {
        return 1;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let start = rela.div_ceil(page) * page;
    let end = (rela + size) / page * page;
    if end > start {
        // SAFETY: whole pages of a read-only private file mapping of the program (checked
        // above); MADV_DONTNEED drops them from this process and a later touch maps them again.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) }
            == 0
        {
            // SAFETY: `out` is the `usize` passed by `release_relocations`.
            unsafe { *out.cast::<usize>() = end - start };
        }
    }
    1
}

#[cfg(test)]
mod tests {
    /// The test binary is position-independent like the agent, so it has a relocation table
    /// of many pages: it is found, released, and the process goes on (the second call finds
    /// the same table and releases it again, refaulting nothing it needs).
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    fn the_relocation_table_is_released() {
        let first = super::release_relocations();
        assert!(first >= 4096, "released {first} bytes");
        assert_eq!(super::release_relocations(), first);
        let text = format!("{:?}", vec![1u8; 3]);
        assert_eq!(text, "[1, 1, 1]");
    }
}
