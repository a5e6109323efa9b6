//! Mesh packets (PROTOCOL.md §3): the header, IP destinations, and `triage`, the checks every
//! received packet goes through before the router looks at it.

use crate::constants::{CMD_DATA, CMD_IPV4, CMD_IPV6, CMD_NAME, HEADER_LEN, WINDOW_MS};
use crate::dedup::DuplicateFilter;

/// `(timestamp_ms, cmd)`, or `None` for a packet shorter than the header.
pub fn parse_header(packet: &[u8]) -> Option<(u64, u8)> {
    let header = packet.get(..HEADER_LEN)?;
    let timestamp_ms = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    Some((timestamp_ms, header[8]))
}

/// Writes `timestamp_ms || cmd` into the first `HEADER_LEN` bytes of `out`.
pub fn write_header(out: &mut [u8], timestamp_ms: u64, cmd: u8) {
    out[..8].copy_from_slice(&timestamp_ms.to_le_bytes());
    out[8] = cmd;
}

pub fn make_packet(timestamp_ms: u64, cmd: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; HEADER_LEN + payload.len()];
    write_header(&mut packet, timestamp_ms, cmd);
    packet[HEADER_LEN..].copy_from_slice(payload);
    packet
}

/// The destination address of an IPv4 (4 bytes) or IPv6 (16 bytes) packet.
pub fn ip_destination(ip_packet: &[u8]) -> Option<&[u8]> {
    match ip_packet.first()? >> 4 {
        4 => ip_packet.get(16..20),
        6 => ip_packet.get(24..40),
        _ => None,
    }
}

/// A packet that passed `triage`. `key` is part of `packet`: the name (cmd 0), the announced
/// address (cmd 1, 2) or the IP destination (cmd 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// Position of the packet in the batch.
    pub index: usize,
    pub cmd: u8,
    pub timestamp_ms: u64,
    pub key: &'a [u8],
    pub packet: &'a [u8],
    /// False for a packet seen before, which is not acted on or forwarded again. The router
    /// still learns from where it came: a repeated announcement marks its link as a backup path
    /// to the address, and a data packet from the very link our route to its destination leads
    /// over shows that the peer there routes through us.
    pub fresh: bool,
}

/// Steps 1-3 and 6 of PROTOCOL.md §3 and the payload checks of steps 4 and 5, over a batch in
/// order. Packets dropped before step 3 are not remembered by `seen`; those dropped after are.
/// Duplicates come back with `fresh` false.
pub fn triage<'a>(
    packets: &[&'a [u8]],
    now_ms: u64,
    seen: &mut DuplicateFilter,
) -> Vec<Accepted<'a>> {
    packets
        .iter()
        .enumerate()
        .filter_map(|(index, &packet)| {
            let (timestamp_ms, cmd) = parse_header(packet)?;
            if now_ms.abs_diff(timestamp_ms) > WINDOW_MS {
                return None;
            }
            let fresh = seen.insert(packet);
            let payload = &packet[HEADER_LEN..];
            let key = match cmd {
                CMD_NAME => payload,
                CMD_IPV6 if payload.len() == 16 => payload,
                CMD_IPV4 if payload.len() == 4 => payload,
                CMD_DATA => ip_destination(payload)?,
                _ => return None,
            };
            Some(Accepted {
                index,
                cmd,
                timestamp_ms,
                key,
                packet,
                fresh,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn ipv4_to(dst: [u8; 4]) -> Vec<u8> {
        let mut ip = vec![0u8; 28];
        ip[0] = 0x45;
        ip[16..20].copy_from_slice(&dst);
        ip
    }

    fn ipv6_to(dst: [u8; 16]) -> Vec<u8> {
        let mut ip = vec![0u8; 48];
        ip[0] = 0x60;
        ip[24..40].copy_from_slice(&dst);
        ip
    }

    #[test]
    fn header_round_trip() {
        let packet = make_packet(NOW, 3, b"xyz");
        assert_eq!(parse_header(&packet), Some((NOW, 3)));
        assert_eq!(&packet[9..], b"xyz");
        assert_eq!(parse_header(&packet[..8]), None);
        assert_eq!(
            parse_header(&make_packet(u64::MAX, 255, b"")),
            Some((u64::MAX, 255))
        );
    }

    #[test]
    fn ip_destinations() {
        assert_eq!(
            ip_destination(&ipv4_to([10, 0, 0, 2])),
            Some(&[10, 0, 0, 2][..])
        );
        assert_eq!(ip_destination(&ipv6_to([0xfd; 16])), Some(&[0xfd; 16][..]));
        assert_eq!(ip_destination(&ipv4_to([1; 4])[..19]), None);
        assert_eq!(ip_destination(&ipv6_to([1; 16])[..39]), None);
        assert_eq!(ip_destination(&[0x50; 60]), None);
        assert_eq!(ip_destination(b""), None);
    }

    #[test]
    fn triage_keeps_good_packets_in_order() {
        let mut seen = DuplicateFilter::new(100, Some([0; 16]));
        let name = make_packet(NOW, CMD_NAME, b"alice");
        let v6 = make_packet(NOW - 1, CMD_IPV6, &[0xfd; 16]);
        let v4 = make_packet(NOW + 1, CMD_IPV4, &[10, 0, 0, 1]);
        let data4 = make_packet(NOW, CMD_DATA, &ipv4_to([10, 0, 0, 2]));
        let data6 = make_packet(NOW, CMD_DATA, &ipv6_to([0xfd; 16]));
        let batch = [&name[..], &v6, &v4, &data4, &data6];
        let got = triage(&batch, NOW, &mut seen);
        let summary: Vec<(u8, u64, &[u8])> =
            got.iter().map(|a| (a.cmd, a.timestamp_ms, a.key)).collect();
        assert_eq!(
            summary,
            vec![
                (0, NOW, &b"alice"[..]),
                (1, NOW - 1, &[0xfd; 16][..]),
                (2, NOW + 1, &[10, 0, 0, 1][..]),
                (3, NOW, &[10, 0, 0, 2][..]),
                (3, NOW, &[0xfd; 16][..]),
            ]
        );
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, a)| a.index == i && a.packet == batch[i]));
        assert!(got.iter().all(|a| a.fresh));
        // Seen again: every packet comes back, not fresh, with its key (what the router learns
        // from: backup paths, and routes that lead back to us).
        let again = triage(&batch, NOW, &mut seen);
        let stale: Vec<(usize, bool, &[u8])> =
            again.iter().map(|a| (a.index, a.fresh, a.key)).collect();
        let keys: Vec<(usize, bool, &[u8])> = got.iter().map(|a| (a.index, false, a.key)).collect();
        assert_eq!(stale, keys);
    }

    #[test]
    fn triage_drops_and_what_it_remembers() {
        let mut seen = DuplicateFilter::new(100, Some([0; 16]));
        let short = vec![0u8; 8];
        let old = make_packet(NOW - WINDOW_MS - 1, CMD_NAME, b"a");
        let future = make_packet(NOW + WINDOW_MS + 1, CMD_NAME, b"a");
        let edge = make_packet(NOW - WINDOW_MS, CMD_NAME, b"a");
        let bad_v6 = make_packet(NOW, CMD_IPV6, &[1; 15]);
        let bad_v4 = make_packet(NOW, CMD_IPV4, &[1; 5]);
        let not_ip = make_packet(NOW, CMD_DATA, &[0x70; 40]);
        let unknown = make_packet(NOW, 4, b"");
        let batch = [
            &short[..],
            &old,
            &future,
            &edge,
            &bad_v6,
            &bad_v4,
            &not_ip,
            &unknown,
            &edge,
        ];
        let got = triage(&batch, NOW, &mut seen);
        let kept: Vec<(usize, bool)> = got.iter().map(|a| (a.index, a.fresh)).collect();
        assert_eq!(
            kept,
            vec![(3, true), (8, false)],
            "the edge packet, then its duplicate"
        );
        assert_eq!(got[0].packet, &edge[..]);
        // Dropped at steps 1 and 2: forgotten. Dropped after step 3: remembered.
        for (packet, remembered) in [(&short, false), (&old, false), (&future, false)] {
            assert_eq!(seen.contains(packet), remembered);
        }
        for packet in [&bad_v6, &bad_v4, &not_ip, &unknown] {
            assert!(seen.contains(packet));
        }
        assert_eq!(seen.len(), 5);
    }
}
