//! A node's IPv6 address from its name (PROTOCOL.md §1).
//!
//! The search for a state whose `b` starts `fd 00` takes about 65,536 rounds: callers cache it.
//! A node that learns many names at once (a table replayed by a new peer) derives them together
//! with `names_to_ipv6`, whose searches run side by side in vector lanes.

use crate::speck::ernd;

/// Zero rounds after each byte of the name, and again after the whole name.
const STIR_ROUNDS: usize = 32;
/// Searches `names_to_ipv6` runs side by side: two AVX-512 registers of eight 64-bit words.
const LANES: usize = 16;
/// Rounds all lanes take between looks at which of them has found its state. A lane that found
/// one within the block is searched again from the block's start, alone, to the very round.
const BLOCK_ROUNDS: usize = 64;
/// With no names left to load and this few lanes still searching, they finish one by one: a
/// lone search in plain integer rounds beats lockstep rounds of mostly idle lanes.
const LANES_FINISHED_ALONE: usize = 4;

/// The 16-byte address of `name` (its UTF-8 bytes); it always starts `fd00`.
pub fn name_to_ipv6(name: &[u8]) -> [u8; 16] {
    let (a, b) = stirred(name);
    finish(a, b)
}

/// The addresses of `names`, in order: each what `name_to_ipv6` gives, at a fraction of the cost
/// for more than a few names. Each lane searches for one name; a lane whose search ends takes the
/// next name, so lanes stay busy until the last names, whose searches end alone.
pub fn names_to_ipv6(names: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut out = vec![[0u8; 16]; names.len()];
    let mut lanes = Lanes {
        a: [0; LANES],
        b: [0; LANES],
        name: [None; LANES],
    };
    let mut next = 0;
    for lane in 0..LANES {
        next = lanes.load(lane, names, next, &mut out);
    }
    loop {
        let searching = lanes.name.iter().filter(|name| name.is_some()).count();
        if next == names.len() && searching <= LANES_FINISHED_ALONE {
            for lane in 0..LANES {
                if let Some(index) = lanes.name[lane] {
                    out[index] = finish(lanes.a[lane], lanes.b[lane]);
                }
            }
            return out;
        }
        let (start_a, start_b) = (lanes.a, lanes.b);
        let found = search_block(&mut lanes.a, &mut lanes.b);
        for lane in 0..LANES {
            if !found[lane] {
                continue;
            }
            if let Some(index) = lanes.name[lane] {
                // The lane's state at the block's start was not found yet, so the first one
                // found from there lies within the block: one search alone to that very round.
                out[index] = finish(start_a[lane], start_b[lane]);
                lanes.name[lane] = None;
                next = lanes.load(lane, names, next, &mut out);
            }
        }
    }
}

/// The search state of each lane and the index of the name it searches for (None: idle, its
/// state runs on unread).
struct Lanes {
    a: [u64; LANES],
    b: [u64; LANES],
    name: [Option<usize>; LANES],
}

impl Lanes {
    /// Put the name at `next`, or the first after it that still needs a search, in `lane`;
    /// returns the index after it. A name whose stirred state is already found (one in 65,536)
    /// goes straight to `out`.
    fn load(
        &mut self,
        lane: usize,
        names: &[&[u8]],
        mut next: usize,
        out: &mut [[u8; 16]],
    ) -> usize {
        while next < names.len() {
            let (a, b) = stirred(names[next]);
            if !found(b) {
                (self.a[lane], self.b[lane], self.name[lane]) = (a, b, Some(next));
                return next + 1;
            }
            out[next] = address(a, b);
            next += 1;
        }
        next
    }
}

/// The state after the name's bytes and the stirring rounds, where the search starts.
fn stirred(name: &[u8]) -> (u64, u64) {
    let (mut a, mut b) = (69u64, name.len() as u64);
    for &c in name {
        (a, b) = ernd(a, b, c as u64);
        for _ in 0..STIR_ROUNDS {
            (a, b) = ernd(a, b, 0);
        }
    }
    for _ in 0..STIR_ROUNDS {
        (a, b) = ernd(a, b, 0);
    }
    (a, b)
}

/// Whether the low two bytes of `b`, little-endian, read fd 00: the search's end.
#[inline(always)]
fn found(b: u64) -> bool {
    b & 0xffff == 0x00fd
}

/// Search on from `(a, b)` to the first state found; its address.
fn finish(mut a: u64, mut b: u64) -> [u8; 16] {
    while !found(b) {
        (a, b) = ernd(a, b, 0);
    }
    address(a, b)
}

fn address(a: u64, b: u64) -> [u8; 16] {
    let mut address = [0u8; 16];
    address[..8].copy_from_slice(&b.to_le_bytes());
    address[8..].copy_from_slice(&a.to_le_bytes());
    address
}

/// BLOCK_ROUNDS zero-key rounds on every lane; per lane, whether any state on the way was
/// found. With AVX-512 or AVX2 when the CPU has it.
fn search_block(a: &mut [u64; LANES], b: &mut [u64; LANES]) -> [bool; LANES] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature the function is compiled for.
            return unsafe { search_block_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { search_block_avx2(a, b) };
        }
    }
    search_block_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn search_block_avx512(a: &mut [u64; LANES], b: &mut [u64; LANES]) -> [bool; LANES] {
    search_block_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn search_block_avx2(a: &mut [u64; LANES], b: &mut [u64; LANES]) -> [bool; LANES] {
    search_block_portable(a, b)
}

/// Lockstep loops without dependencies between lanes, which the compiler turns into vector code.
/// A lane's distance from the end, `(b ^ fd) & ffff`, is 0 when found: the least distance seen
/// tells whether any state was found in two vector operations a round (an XOR-AND and a min).
#[inline(always)]
fn search_block_portable(a: &mut [u64; LANES], b: &mut [u64; LANES]) -> [bool; LANES] {
    let mut least = [u64::MAX; LANES];
    for _ in 0..BLOCK_ROUNDS {
        for lane in 0..LANES {
            (a[lane], b[lane]) = ernd(a[lane], b[lane], 0);
            least[lane] = least[lane].min((b[lane] ^ 0x00fd) & 0xffff);
        }
    }
    least.map(|distance| distance == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::vectors;

    fn groups(address: &[u8; 16]) -> String {
        let groups: Vec<String> = address
            .chunks(2)
            .map(|g| format!("{:02x}{:02x}", g[0], g[1]))
            .collect();
        groups.join(":")
    }

    #[test]
    fn names_together_get_the_addresses_each_gets_alone() {
        // Ten times as many names as lanes, of every length up to 60 bytes, the empty one too.
        let names: Vec<Vec<u8>> = (0..160usize)
            .map(|i| {
                let mut name = format!("node {i}").into_bytes();
                name.resize(i % 61, b'x');
                name
            })
            .collect();
        let slices: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let together = names_to_ipv6(&slices);
        for (name, address) in slices.iter().zip(&together) {
            assert_eq!(*address, name_to_ipv6(name), "{name:?}");
        }
        assert!(names_to_ipv6(&[]).is_empty());
        for v in vectors()["name_to_ipv6"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap().as_bytes();
            assert_eq!(
                groups(&names_to_ipv6(&[name])[0]),
                v["ipv6"].as_str().unwrap()
            );
        }
    }

    #[test]
    fn a_name_found_before_its_search_starts_takes_no_lane() {
        // One name in 65,536 is found right after its stirring; find one among short names.
        let lucky = (0u32..)
            .map(|n| n.to_string().into_bytes())
            .find(|name| found(stirred(name).1))
            .unwrap();
        let names: Vec<Vec<u8>> = (0..40).map(|n| format!("node {n}").into_bytes()).collect();
        let mut slices: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        slices.insert(3, &lucky);
        slices.push(&lucky);
        let together = names_to_ipv6(&slices);
        for (name, address) in slices.iter().zip(&together) {
            assert_eq!(*address, name_to_ipv6(name), "{name:?}");
        }
    }

    #[test]
    fn name_to_ipv6_vectors() {
        for v in vectors()["name_to_ipv6"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap();
            assert_eq!(
                groups(&name_to_ipv6(name.as_bytes())),
                v["ipv6"].as_str().unwrap()
            );
        }
    }
}
