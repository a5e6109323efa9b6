//! ICMP errors for IP packets that do not fit one mesh packet.
//!
//! The TUN device may have an MTU up to 65,535, but a mesh packet holds at most 65,526 bytes of IP
//! packet after its 9-byte header (PROTOCOL.md §2-3). A longer packet read from the device is
//! answered, back into the device, the way a router answers a packet too big for its next hop:
//! ICMPv6 "packet too big" (RFC 4443 §3.2) or ICMPv4 "fragmentation needed" (RFC 792, RFC 1191),
//! both carrying the MTU that fits. The host's kernel then remembers that path MTU for the
//! destination and fragments (or makes TCP segments) to fit it.
//!
//! IPv4 packets without DF are answered too, where a router would fragment them: the only one
//! who reads the answer is the host's own kernel, which updates its path MTU from it all the same
//! (Linux's `icmp_unreach` does not look at the quoted packet's DF bit), so the next packets fit.

/// The least MTU of an IPv6 link; an ICMPv6 error holds as much of the packet as fits in it
/// (RFC 4443 §2.4 c).
pub const IPV6_MIN_MTU: usize = 1280;
/// An ICMPv4 error holds as much of the packet as fits in 576 bytes (RFC 1812 §4.3.2.3).
pub const IPV4_ERROR_MAX_LEN: usize = 576;
/// The hop limit / TTL the errors are sent with.
const HOP_LIMIT: u8 = 64;

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
/// Bound on the IPv6 extension headers walked to find out whether a packet is an ICMPv6 error.
const MAX_EXTENSION_HEADERS: usize = 16;

/// The ICMP error to write back to the TUN device for `ip_packet`, which is longer than `mtu`:
/// "packet too big" for IPv6, "fragmentation needed" for IPv4, advertising `mtu`.
///
/// `source_v6` / `source_v4` is the error's source address; `None` takes the packet's own
/// destination. The error goes to the packet's source.
///
/// `None` when there is nothing to answer: the packet fits `mtu`, is not IPv4 or IPv6, is
/// malformed (short, lengths that disagree, bad IPv4 header checksum), is itself an ICMP error,
/// is a non-first IPv4 fragment, or comes from (IPv4: goes to) an address no error may be sent
/// to or about (RFC 1812 §4.3.2.7, RFC 4443 §2.4 e).
pub fn too_big(
    ip_packet: &[u8],
    mtu: u16,
    source_v6: Option<&[u8; 16]>,
    source_v4: Option<&[u8; 4]>,
) -> Option<Vec<u8>> {
    if ip_packet.len() <= usize::from(mtu) {
        return None;
    }
    match ip_packet.first()? >> 4 {
        4 => too_big_v4(ip_packet, mtu, source_v4),
        6 => too_big_v6(ip_packet, mtu, source_v6),
        _ => None,
    }
}

fn too_big_v4(packet: &[u8], mtu: u16, source: Option<&[u8; 4]>) -> Option<Vec<u8>> {
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    if header_len < IPV4_HEADER_LEN || total_len < header_len || total_len > packet.len() {
        return None;
    }
    if checksum(&[&packet[..header_len]]) != 0 {
        return None;
    }
    let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    let protocol = packet[9];
    let original_source: [u8; 4] = packet[12..16].try_into().expect("4 bytes");
    let original_destination: [u8; 4] = packet[16..20].try_into().expect("4 bytes");
    if fragment_offset != 0
        || !is_unicast_v4(&original_source)
        || !is_unicast_v4(&original_destination)
        || original_source[0] == 127
    {
        return None;
    }
    if protocol == PROTO_ICMP && packet.get(header_len).is_some_and(|&t| is_icmpv4_error(t)) {
        return None;
    }
    let quoted = &packet[..packet
        .len()
        .min(IPV4_ERROR_MAX_LEN - IPV4_HEADER_LEN - ICMP_HEADER_LEN)];
    let len = IPV4_HEADER_LEN + ICMP_HEADER_LEN + quoted.len();
    let mut error = Vec::with_capacity(len);
    error.extend_from_slice(&[0x45, 0]);
    error.extend_from_slice(&(len as u16).to_be_bytes());
    error.extend_from_slice(&[0, 0, 0, 0, HOP_LIMIT, PROTO_ICMP, 0, 0]);
    error.extend_from_slice(source.unwrap_or(&original_destination));
    error.extend_from_slice(&original_source);
    let sum = checksum(&[&error]);
    error[10..12].copy_from_slice(&sum.to_be_bytes());
    // Type 3 "destination unreachable", code 4 "fragmentation needed", next-hop MTU (RFC 1191).
    error.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
    error.extend_from_slice(&mtu.to_be_bytes());
    error.extend_from_slice(quoted);
    let sum = checksum(&[&error[IPV4_HEADER_LEN..]]);
    error[IPV4_HEADER_LEN + 2..IPV4_HEADER_LEN + 4].copy_from_slice(&sum.to_be_bytes());
    Some(error)
}

fn too_big_v6(packet: &[u8], mtu: u16, source: Option<&[u8; 16]>) -> Option<Vec<u8>> {
    let payload_len = u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]);
    if packet.len() < IPV6_HEADER_LEN + usize::from(payload_len) || payload_len == 0 {
        return None; // cut short, or a jumbogram, which no TUN MTU lets through
    }
    let original_source: [u8; 16] = packet[8..24].try_into().expect("16 bytes");
    let original_destination: [u8; 16] = packet[24..40].try_into().expect("16 bytes");
    // Too big is the one error sent about multicast destinations too (RFC 4443 §2.4 e.2).
    if original_source[0] == 0xff || original_source == [0; 16] || is_icmpv6_error(packet)? {
        return None;
    }
    let quoted = &packet[..packet
        .len()
        .min(IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMP_HEADER_LEN)];
    let icmp_len = ICMP_HEADER_LEN + quoted.len();
    let source = source.unwrap_or(&original_destination);
    let mut error = Vec::with_capacity(IPV6_HEADER_LEN + icmp_len);
    error.extend_from_slice(&[0x60, 0, 0, 0]);
    error.extend_from_slice(&(icmp_len as u16).to_be_bytes());
    error.extend_from_slice(&[PROTO_ICMPV6, HOP_LIMIT]);
    error.extend_from_slice(source);
    error.extend_from_slice(&original_source);
    // Type 2 "packet too big", code 0, the MTU as a u32.
    error.extend_from_slice(&[2, 0, 0, 0]);
    error.extend_from_slice(&u32::from(mtu).to_be_bytes());
    error.extend_from_slice(quoted);
    let pseudo_header = pseudo_header_v6(source, &original_source, icmp_len);
    let sum = checksum(&[&pseudo_header, &error[IPV6_HEADER_LEN..]]);
    error[IPV6_HEADER_LEN + 2..IPV6_HEADER_LEN + 4].copy_from_slice(&sum.to_be_bytes());
    Some(error)
}

/// Whether an IPv6 packet carries an ICMPv6 error, behind any extension headers; `None` when the
/// header chain runs past the end of the packet.
fn is_icmpv6_error(packet: &[u8]) -> Option<bool> {
    let mut next_header = packet[6];
    let mut offset = IPV6_HEADER_LEN;
    for _ in 0..MAX_EXTENSION_HEADERS {
        if !matches!(next_header, 0 | 43 | 44 | 51 | 60 | PROTO_ICMPV6) {
            return Some(false);
        }
        let header = packet.get(offset..offset + 2)?;
        offset += match next_header {
            // ICMPv6 types below 128 are errors (RFC 4443 §2.1).
            PROTO_ICMPV6 => return Some(header[0] < 128),
            // Fragment: a later fragment does not show its upper-layer header, so it is no error.
            44 => {
                let fragment = packet.get(offset..offset + 8)?;
                if u16::from_be_bytes([fragment[2], fragment[3]]) >> 3 != 0 {
                    return Some(false);
                }
                8
            }
            // Authentication header: 4-byte units after the first 8.
            51 => (usize::from(header[1]) + 2) * 4,
            // Hop-by-hop options, routing, destination options: 8-byte units after the first 8.
            _ => (usize::from(header[1]) + 1) * 8,
        };
        if offset > packet.len() {
            return None;
        }
        next_header = header[0];
    }
    Some(false)
}

/// ICMPv4 error types: destination unreachable, source quench, redirect, time exceeded,
/// parameter problem.
fn is_icmpv4_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}

/// Neither "this network" (0/8), multicast, reserved nor limited broadcast.
fn is_unicast_v4(address: &[u8; 4]) -> bool {
    address[0] != 0 && address[0] < 224
}

fn pseudo_header_v6(source: &[u8; 16], destination: &[u8; 16], length: usize) -> [u8; 40] {
    let mut header = [0u8; 40];
    header[..16].copy_from_slice(source);
    header[16..32].copy_from_slice(destination);
    header[32..36].copy_from_slice(&(length as u32).to_be_bytes());
    header[39] = PROTO_ICMPV6;
    header
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts`, each of even length but the
/// last: the ones' complement of the ones' complement sum of its 16-bit big-endian words.
/// Over data that holds its own correct checksum, it is 0.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let sum: u64 = parts.iter().map(|part| u64::from(word_sum(part))).sum();
    !fold(sum)
}

/// The ones' complement sum of `bytes` as 16-bit big-endian words (a last odd byte is the high
/// byte of a word), folded to 16 bits.
///
/// The TCP checksum of every segment the node writes to its host in a run (`gro`) comes through
/// here, so it goes 8 bytes at a time: the sum of 16-bit words is the same, modulo 0xffff, as
/// the sum of the 32-bit words they make, and summing them in the machine's little-endian
/// order gives the big-endian sum with its two bytes swapped (RFC 1071, 2 (B)).
fn word_sum(bytes: &[u8]) -> u16 {
    let mut chunks = bytes.chunks_exact(8);
    // At most 2^13 chunks of a 64 KiB packet, each adding under 2^33: no overflow.
    let mut little_endian: u64 = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        little_endian += (word & 0xffff_ffff) + (word >> 32);
    }
    let mut sum = u64::from(fold(little_endian).swap_bytes());
    // The rest (under 8 bytes) starts at an even offset, so its words pair up as they are.
    let mut words = chunks.remainder().chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    fold(sum)
}

/// A ones' complement sum folded into 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 word by word, as the definition reads.
    fn checksum_by_words(parts: &[&[u8]]) -> u16 {
        let mut sum: u64 = 0;
        for part in parts {
            let mut words = part.chunks_exact(2);
            for word in &mut words {
                sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
            }
            if let [last] = words.remainder() {
                sum += u64::from(*last) << 8;
            }
        }
        !fold(sum)
    }

    #[test]
    fn checksum_eight_bytes_at_a_time_is_the_word_by_word_checksum() {
        // Lengths around every remainder, the largest packet, and bytes that carry a lot.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in (0..80).chain([1447, 1448, 32768, 65535]) {
            for fill in [None, Some(0xff), Some(0x00)] {
                let data: Vec<u8> = (0..len).map(|_| fill.unwrap_or(next() as u8)).collect();
                let split = if len > 0 {
                    (next() as usize % len) & !1
                } else {
                    0
                };
                let parts = [&data[..split], &data[split..]];
                assert_eq!(
                    checksum(&parts),
                    checksum_by_words(&parts),
                    "{len} bytes, {fill:?}"
                );
                assert_eq!(checksum(&[&data]), checksum_by_words(&[&data]));
            }
        }
    }

    const MTU: u16 = 65526;
    const HOST_V4: [u8; 4] = [10, 250, 0, 1];
    const PEER_V4: [u8; 4] = [10, 250, 0, 2];
    const NODE_V4: [u8; 4] = [10, 250, 0, 9];
    const HOST_V6: [u8; 16] = [0xfd, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 1];
    const PEER_V6: [u8; 16] = [0xfd, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 2];
    const NODE_V6: [u8; 16] = [0xfd, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 9];

    /// An IPv4 packet of `len` bytes with a valid header checksum; `upper` starts its payload.
    fn ipv4(len: usize, protocol: u8, flags_offset: u16, dst: [u8; 4], upper: &[u8]) -> Vec<u8> {
        let mut packet = vec![0xa5u8; len];
        packet[..12].copy_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, protocol, 0, 0]);
        packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        packet[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        packet[12..16].copy_from_slice(&HOST_V4);
        packet[16..20].copy_from_slice(&dst);
        let sum = checksum(&[&packet[..20]]);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
        packet[20..20 + upper.len()].copy_from_slice(upper);
        packet
    }

    /// An IPv6 packet of `len` bytes from HOST_V6; `chain` follows the fixed header.
    fn ipv6(len: usize, next_header: u8, src: [u8; 16], chain: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x5au8; len];
        packet[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        packet[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        packet[6] = next_header;
        packet[7] = 64;
        packet[8..24].copy_from_slice(&src);
        packet[24..40].copy_from_slice(&PEER_V6);
        packet[40..40 + chain.len()].copy_from_slice(chain);
        packet
    }

    const DF: u16 = 0x4000;
    const UDP: u8 = 17;
    const ECHO_REQUEST_V4: &[u8] = &[8, 0];
    const ECHO_REQUEST_V6: &[u8] = &[128, 0];

    #[test]
    fn checksum_matches_known_values() {
        // RFC 1071 §3's example, and an IPv4 header whose checksum field holds b861.
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&header]), 0xb861);
        // An odd last part is padded with a zero byte; split parts sum as one.
        assert_eq!(checksum(&[&[0x12, 0x34, 0x56]]), !0x6834);
        assert_eq!(checksum(&[&header[..10], &header[10..]]), 0xb861);
    }

    #[test]
    fn ipv4_fragmentation_needed() {
        let packet = ipv4(65528, 1, DF, PEER_V4, ECHO_REQUEST_V4);
        let error = too_big(&packet, MTU, None, Some(&NODE_V4)).expect("an error");
        assert_eq!(error.len(), IPV4_ERROR_MAX_LEN);
        assert_eq!(&error[..4], &[0x45, 0, 0x02, 0x40]);
        assert_eq!((error[8], error[9]), (HOP_LIMIT, PROTO_ICMP));
        assert_eq!(&error[12..16], &NODE_V4);
        assert_eq!(&error[16..20], &HOST_V4);
        assert_eq!(checksum(&[&error[..20]]), 0, "IPv4 header checksum");
        assert_eq!(checksum(&[&error[20..]]), 0, "ICMP checksum");
        assert_eq!(
            (&error[20..22], &error[24..28]),
            (&[3, 4][..], &[0, 0, 0xff, 0xf6][..])
        );
        assert_eq!(
            &error[28..],
            &packet[..548],
            "the header and the first 528 bytes after it"
        );
    }

    #[test]
    fn ipv4_source_defaults_to_the_packet_destination_and_df_is_not_required() {
        let packet = ipv4(65535, UDP, 0, PEER_V4, &[]);
        let error = too_big(&packet, MTU, Some(&NODE_V6), None).expect("an error");
        assert_eq!(&error[12..16], &PEER_V4);
        assert_eq!(checksum(&[&error[20..]]), 0);
    }

    #[test]
    fn ipv6_packet_too_big() {
        let packet = ipv6(65528, PROTO_ICMPV6, HOST_V6, ECHO_REQUEST_V6);
        let error = too_big(&packet, MTU, Some(&NODE_V6), Some(&NODE_V4)).expect("an error");
        assert_eq!(error.len(), IPV6_MIN_MTU);
        assert_eq!(
            &error[..8],
            &[0x60, 0, 0, 0, 0x04, 0xd8, PROTO_ICMPV6, HOP_LIMIT]
        );
        assert_eq!(&error[8..24], &NODE_V6);
        assert_eq!(&error[24..40], &HOST_V6);
        assert_eq!(
            (&error[40..42], &error[44..48]),
            (&[2, 0][..], &[0, 0, 0xff, 0xf6][..])
        );
        let pseudo = pseudo_header_v6(&NODE_V6, &HOST_V6, 1240);
        assert_eq!(checksum(&[&pseudo, &error[40..]]), 0, "ICMPv6 checksum");
        assert_eq!(&error[48..], &packet[..1232]);
        // The same without a source given: the packet's destination.
        let error = too_big(&packet, MTU, None, None).expect("an error");
        assert_eq!(&error[8..24], &PEER_V6);
        let pseudo = pseudo_header_v6(&PEER_V6, &HOST_V6, 1240);
        assert_eq!(checksum(&[&pseudo, &error[40..]]), 0);
    }

    #[test]
    fn ipv6_checksum_independently() {
        // Summed as 32-bit words with carries, apart from `checksum`'s 16-bit loop.
        let packet = ipv6(65535, UDP, HOST_V6, &[]);
        let error = too_big(&packet, MTU, Some(&NODE_V6), None).expect("an error");
        let mut data = pseudo_header_v6(&NODE_V6, &HOST_V6, error.len() - 40).to_vec();
        data.extend_from_slice(&error[40..]);
        let sum: u64 = data
            .chunks(4)
            .map(|c| u64::from(u32::from_be_bytes(c.try_into().expect("4 bytes"))))
            .sum();
        let sum = (sum & 0xffff_ffff) + (sum >> 32);
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        assert_eq!(sum, 0xffff);
    }

    #[test]
    fn packets_that_fit_or_are_not_ip_get_no_answer() {
        assert_eq!(
            too_big(&ipv4(65526, UDP, DF, PEER_V4, &[]), MTU, None, None),
            None
        );
        assert_eq!(
            too_big(&ipv6(65526, UDP, HOST_V6, &[]), MTU, None, None),
            None
        );
        assert_eq!(too_big(&[0x50; 65530], MTU, None, None), None);
        assert_eq!(too_big(&[], 0, None, None), None);
        assert_eq!(too_big(&[0x45], 0, None, None), None);
        assert_eq!(too_big(&[0x60; 39], 0, None, None), None);
    }

    #[test]
    fn malformed_packets_get_no_answer() {
        let good = ipv4(65530, UDP, DF, PEER_V4, &[]);
        let mut bad_checksum = good.clone();
        bad_checksum[10] ^= 1;
        let mut short_header = good.clone();
        short_header[0] = 0x44;
        let cut_short = &good[..65529];
        for packet in [&bad_checksum[..], &short_header, cut_short] {
            assert_eq!(too_big(packet, MTU, None, None), None);
        }
        let v6 = ipv6(65530, UDP, HOST_V6, &[]);
        let mut jumbo = v6.clone();
        jumbo[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(too_big(&v6[..65529], MTU, None, None), None);
        assert_eq!(too_big(&jumbo, MTU, None, None), None);
        // A destination options header that claims 8 more bytes than the packet has left.
        let chain_past_end = ipv6(200, 60, HOST_V6, &[UDP, 20]);
        assert_eq!(too_big(&chain_past_end, 100, None, None), None);
        let chain_past_end = ipv6(200, 60, HOST_V6, &[PROTO_ICMPV6, 19]);
        assert_eq!(too_big(&chain_past_end, 100, None, None), None);
        assert!(too_big(&ipv6(200, 60, HOST_V6, &[UDP, 19]), 100, None, None).is_some());
    }

    #[test]
    fn icmp_errors_get_no_answer() {
        for icmp_type in [3, 4, 5, 11, 12] {
            let packet = ipv4(65530, PROTO_ICMP, DF, PEER_V4, &[icmp_type, 0]);
            assert_eq!(too_big(&packet, MTU, None, None), None, "type {icmp_type}");
        }
        for icmp_type in [0, 8, 13] {
            let packet = ipv4(65530, PROTO_ICMP, DF, PEER_V4, &[icmp_type, 0]);
            assert!(
                too_big(&packet, MTU, None, None).is_some(),
                "type {icmp_type}"
            );
        }
        for icmp_type in [1, 2, 3, 4, 127] {
            let packet = ipv6(65530, PROTO_ICMPV6, HOST_V6, &[icmp_type, 0]);
            assert_eq!(too_big(&packet, MTU, None, None), None, "type {icmp_type}");
        }
        for icmp_type in [128, 129, 135, 255] {
            let packet = ipv6(65530, PROTO_ICMPV6, HOST_V6, &[icmp_type, 0]);
            assert!(
                too_big(&packet, MTU, None, None).is_some(),
                "type {icmp_type}"
            );
        }
    }

    #[test]
    fn icmpv6_errors_are_found_behind_extension_headers() {
        // Hop-by-hop (8 bytes), routing (16), AH (12), destination options (8), then ICMPv6.
        let mut chain = vec![43, 0, 0, 0, 0, 0, 0, 0];
        chain.extend_from_slice(&[51, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        chain.extend_from_slice(&[60, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        chain.extend_from_slice(&[PROTO_ICMPV6, 0, 0, 0, 0, 0, 0, 0]);
        let at = chain.len();
        chain.extend_from_slice(&[1, 0]); // destination unreachable
        assert_eq!(
            too_big(&ipv6(200, 0, HOST_V6, &chain), 100, None, None),
            None
        );
        chain[at] = 128; // echo request
        assert!(too_big(&ipv6(200, 0, HOST_V6, &chain), 100, None, None).is_some());
        // The first fragment shows the ICMPv6 type; a later one does not, and is answered.
        let first = [PROTO_ICMPV6, 0, 0, 1, 0, 0, 0, 7, 1, 0];
        assert_eq!(
            too_big(&ipv6(200, 44, HOST_V6, &first), 100, None, None),
            None
        );
        let later = [PROTO_ICMPV6, 0, 0x1f, 0xf9, 0, 0, 0, 7, 1, 0];
        assert!(too_big(&ipv6(200, 44, HOST_V6, &later), 100, None, None).is_some());
    }

    #[test]
    fn addresses_and_fragments_no_error_may_concern() {
        let later_fragment = ipv4(65530, UDP, 0x2001, PEER_V4, &[]);
        assert_eq!(too_big(&later_fragment, MTU, None, None), None);
        let first_fragment = ipv4(65530, UDP, 0x2000, PEER_V4, &[]);
        assert!(too_big(&first_fragment, MTU, None, None).is_some());
        for dst in [
            [224, 0, 0, 1],
            [239, 1, 2, 3],
            [255, 255, 255, 255],
            [0, 0, 0, 0],
        ] {
            assert_eq!(
                too_big(&ipv4(65530, UDP, DF, dst, &[]), MTU, None, None),
                None
            );
        }
        for src in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            let mut packet = ipv4(65530, UDP, DF, PEER_V4, &[]);
            packet[12..16].copy_from_slice(&src);
            packet[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum(&[&packet[..20]]);
            packet[10..12].copy_from_slice(&sum.to_be_bytes());
            assert_eq!(too_big(&packet, MTU, None, None), None, "{src:?}");
        }
        let mut multicast_source = [0u8; 16];
        multicast_source[0] = 0xff;
        for src in [[0; 16], multicast_source] {
            assert_eq!(too_big(&ipv6(65530, UDP, src, &[]), MTU, None, None), None);
        }
        // Too big is sent about multicast destinations too.
        let mut to_multicast = ipv6(65530, UDP, HOST_V6, &[]);
        to_multicast[24] = 0xff;
        assert!(too_big(&to_multicast, MTU, Some(&NODE_V6), None).is_some());
    }

    #[test]
    fn short_packets_are_quoted_whole() {
        let packet = ipv6(300, UDP, HOST_V6, &[]);
        let error = too_big(&packet, 280, Some(&NODE_V6), None).expect("an error");
        assert_eq!((error.len(), &error[48..]), (348, &packet[..]));
        assert_eq!(&error[44..48], &280u32.to_be_bytes());
        let packet = ipv4(100, UDP, DF, PEER_V4, &[]);
        let error = too_big(&packet, 68, None, None).expect("an error");
        assert_eq!((error.len(), &error[28..]), (128, &packet[..]));
    }
}
