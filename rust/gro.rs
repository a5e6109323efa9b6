//! TCP receive coalescing for TUN writes (GRO, after wireguard-go's `tun/offload_linux.go`).
//!
//! A node that opens its TUN device with `IFF_VNET_HDR` puts a 10-byte `struct virtio_net_hdr`
//! before each packet it writes. With that header it can hand the kernel one TCP "super-packet"
//! in place of many consecutive segments of a flow: one write, one pass up the host's stack. This
//! module plans those writes for a batch of delivered IP packets and fills them in; the node does
//! the writing.
//!
//! Theory of operation: packets are walked in order. A candidate joins the latest write of its
//! connection (addresses and ports) when that write is a run it may extend; otherwise it opens a
//! run of its own where it stands. So a segment only ever moves ahead of other connections'
//! packets, never ahead of its own connection's. A run of one, and every packet that is not a
//! candidate, is written as it came after a zero header; an empty packet is left out (there is
//! nothing to write).
//!
//! The rules, each to keep what the host sees the same as had it got the segments one by one:
//! - Candidate: IPv4 with IHL 5 (no options), a valid header checksum, not a fragment (MF clear,
//!   offset 0), DF set (without DF the kernel's GRO wants consecutive IDs, which we do not
//!   track), total length equal to the packet's; or IPv6 with next header TCP and payload
//!   length equal to what arrived. Then TCP with a data offset of at least 20 bytes inside the
//!   packet, flags exactly ACK or ACK|PSH, a non-empty payload, and a valid TCP checksum: the
//!   header below asks the host to compute a fresh checksum, which would hide a corrupt segment.
//! - Same flow as the run: addresses, ports, ACK number, data offset byte and options, window
//!   and urgent pointer (the kernel's GRO flushes on a window change); IPv4 TOS, DF/reserved
//!   bits and TTL; IPv6 version, traffic class, flow label and hop limit.
//! - Joins the run when its sequence number follows on (mod 2^32), the run has no PSH yet, every
//!   segment so far is full size (the first one's payload, `gso_size`), this one is no bigger,
//!   and the super-packet stays within 65,535 bytes.
//!
//! A super-packet is the first segment's headers and every segment's payload, with the IPv4
//! total length and header checksum or the IPv6 payload length rewritten, PSH set if the last
//! segment had it, and in the TCP checksum field the folded, not inverted, pseudo-header sum
//! (addresses, protocol 6, TCP length of the whole). Its header (little-endian) is
//! `flags=NEEDS_CSUM, gso_type=TCPV4|TCPV6, hdr_len=IP+TCP header length, gso_size,
//! csum_start=IP header length, csum_offset=16`.

use crate::icmp::checksum;

/// Bytes of `struct virtio_net_hdr` (linux/virtio_net.h), before each packet of a TUN write.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the host finishes the checksum from `csum_start`.
const F_NEEDS_CSUM: u8 = 1;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
/// Where the TCP checksum sits in the TCP header.
const TCP_CSUM_OFFSET: usize = 16;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const PROTO_TCP: u8 = 6;
const IPV4_DF: u8 = 0x40;
const IPV4_MF: u8 = 0x20;
/// Largest super-packet: the IPv4 total length field's limit, kept for IPv6 too.
const MAX_SUPER_LEN: usize = 65535;

/// Where the TCP header of a packet starts, when it has addresses and ports we can compare.
#[derive(Clone, Copy)]
struct Connection {
    v6: bool,
    ip_header_len: usize,
}

/// A run of segments the host may take as one; its fields describe the first.
struct Run {
    header_len: usize,
    gso_size: usize,
    next_seq: u32,
    psh: bool,
}

/// One TUN write: the packets it carries (indices into the batch, the first gives the headers).
pub struct Write {
    packets: Vec<usize>,
    ip_len: usize,
    connection: Option<Connection>,
    run: Option<Run>,
}

impl Write {
    /// Bytes of the write: the header and the packet or super-packet.
    pub fn size(&self) -> usize {
        VNET_HDR_LEN + self.ip_len
    }

    /// Indices of the packets the write carries, in order.
    pub fn packets(&self) -> &[usize] {
        &self.packets
    }

    fn coalesced(&self) -> bool {
        self.packets.len() > 1
    }
}

/// The writes for one batch of IP packets, in order: a run stands where its first segment stood.
pub struct Plan<'a> {
    packets: &'a [&'a [u8]],
    writes: Vec<Write>,
}

impl<'a> Plan<'a> {
    pub fn new(packets: &'a [&'a [u8]]) -> Self {
        let mut writes: Vec<Write> = Vec::with_capacity(packets.len());
        for (index, &packet) in packets.iter().enumerate() {
            if packet.is_empty() {
                continue;
            }
            let connection = connection(packet);
            let candidate = candidate(packet);
            if let (Some(c), Some((seq, payload, psh))) = (connection, candidate) {
                let latest = writes.iter_mut().rev().find(|w| {
                    w.connection
                        .is_some_and(|wc| same_connection(packets[w.packets[0]], wc, packet, c))
                });
                if let Some(write) = latest {
                    let head = packets[write.packets[0]];
                    if let Some(run) = &mut write.run {
                        let full =
                            write.ip_len - run.header_len == run.gso_size * write.packets.len();
                        if seq == run.next_seq
                            && !run.psh
                            && full
                            && payload <= run.gso_size
                            && write.ip_len + payload <= MAX_SUPER_LEN
                            && same_flow(head, packet, c, run.header_len)
                        {
                            write.packets.push(index);
                            write.ip_len += payload;
                            run.next_seq = seq.wrapping_add(payload as u32);
                            run.psh = psh;
                            continue;
                        }
                    }
                }
            }
            let run = candidate.map(|(seq, payload, psh)| Run {
                header_len: packet.len() - payload,
                gso_size: payload,
                next_seq: seq.wrapping_add(payload as u32),
                psh,
            });
            writes.push(Write {
                packets: vec![index],
                ip_len: packet.len(),
                connection,
                run,
            });
        }
        Plan { packets, writes }
    }

    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// Fill `out`, `self.writes()[write].size()` bytes, with that write.
    pub fn write_into(&self, write: usize, out: &mut [u8]) {
        let write = &self.writes[write];
        let head = self.packets[write.packets[0]];
        let (header, body) = out.split_at_mut(VNET_HDR_LEN);
        let (Some(run), Some(c), true) = (&write.run, write.connection, write.coalesced()) else {
            header.fill(0);
            body.copy_from_slice(head);
            return;
        };
        let (iph, hlen) = (c.ip_header_len, run.header_len);
        body[..hlen].copy_from_slice(&head[..hlen]);
        let mut at = hlen;
        for &index in &write.packets {
            let payload = &self.packets[index][hlen..];
            body[at..at + payload.len()].copy_from_slice(payload);
            at += payload.len();
        }
        let ip_len = write.ip_len;
        let gso_type = if c.v6 {
            body[4..6].copy_from_slice(&((ip_len - iph) as u16).to_be_bytes());
            GSO_TCPV6
        } else {
            body[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            body[10..12].fill(0);
            let sum = checksum(&[&body[..iph]]);
            body[10..12].copy_from_slice(&sum.to_be_bytes());
            GSO_TCPV4
        };
        if run.psh {
            body[iph + 13] |= TCP_PSH;
        }
        let (addresses, length_protocol) = pseudo_header(body, c, ip_len - iph);
        let partial = !checksum(&[addresses, &length_protocol]);
        body[iph + TCP_CSUM_OFFSET..iph + TCP_CSUM_OFFSET + 2]
            .copy_from_slice(&partial.to_be_bytes());
        header[0] = F_NEEDS_CSUM;
        header[1] = gso_type;
        header[2..4].copy_from_slice(&(hlen as u16).to_le_bytes());
        header[4..6].copy_from_slice(&(run.gso_size as u16).to_le_bytes());
        header[6..8].copy_from_slice(&(iph as u16).to_le_bytes());
        header[8..10].copy_from_slice(&(TCP_CSUM_OFFSET as u16).to_le_bytes());
    }
}

/// The connection of an IPv4 or IPv6 packet that carries TCP ports within its bytes: a later
/// segment never joins a run across a packet of its own connection, candidate or not.
fn connection(p: &[u8]) -> Option<Connection> {
    let (v6, ip_header_len) = match p.first()? >> 4 {
        4 if p.len() >= 20 && p[9] == PROTO_TCP && p[6] & 0x1F == 0 && p[7] == 0 => {
            (false, usize::from(p[0] & 0x0F) * 4)
        }
        6 if p.len() >= 40 && p[6] == PROTO_TCP => (true, 40),
        _ => return None,
    };
    (ip_header_len >= 20 && p.len() >= ip_header_len + 4)
        .then_some(Connection { v6, ip_header_len })
}

fn same_connection(a: &[u8], ca: Connection, b: &[u8], cb: Connection) -> bool {
    let addresses = if ca.v6 { 8..40 } else { 12..20 };
    ca.v6 == cb.v6
        && a[addresses.clone()] == b[addresses]
        && a[ca.ip_header_len..ca.ip_header_len + 4] == b[cb.ip_header_len..cb.ip_header_len + 4]
}

/// (sequence number, payload length, PSH) of a segment that may join or open a run.
fn candidate(p: &[u8]) -> Option<(u32, usize, bool)> {
    let c = connection(p)?;
    let iph = c.ip_header_len;
    if c.v6 {
        if usize::from(u16::from_be_bytes([p[4], p[5]])) != p.len() - 40 {
            return None;
        }
    } else {
        // `connection` saw offset 0; MF set would make this a first fragment.
        if p[0] != 0x45
            || p[6] & IPV4_MF != 0
            || p[6] & IPV4_DF == 0
            || usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len()
            || checksum(&[&p[..20]]) != 0
        {
            return None;
        }
    }
    let tcp = p.get(iph..iph + 20)?;
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    let (addresses, length_protocol) = pseudo_header(p, c, p.len() - iph);
    let header_len = iph + data_offset;
    if data_offset < 20
        || header_len >= p.len()
        || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH)
        || checksum(&[addresses, &length_protocol, &p[iph..]]) != 0
    {
        return None;
    }
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    Some((seq, p.len() - header_len, flags & TCP_PSH != 0))
}

/// Everything but sequence number, flags and checksum that must match for `b` to join `a`'s
/// run; both are candidates of the same connection, with headers of at least `header_len`.
fn same_flow(a: &[u8], b: &[u8], c: Connection, header_len: usize) -> bool {
    let iph = c.ip_header_len;
    let ip_same = if c.v6 {
        a[0..4] == b[0..4] && a[7] == b[7]
    } else {
        a[1] == b[1] && a[6] & 0xE0 == b[6] & 0xE0 && a[8] == b[8]
    };
    // ACK number and data offset byte; window; urgent pointer and options.
    ip_same
        && b.len() > header_len
        && a[iph + 8..iph + 13] == b[iph + 8..iph + 13]
        && a[iph + 14..iph + 16] == b[iph + 14..iph + 16]
        && a[iph + 18..header_len] == b[iph + 18..header_len]
}

/// The TCP pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1) for `tcp_len` bytes of TCP, as two
/// parts for `checksum`: the addresses, then length and protocol laid out as IPv6 does (the
/// same sum as IPv4's layout).
fn pseudo_header(p: &[u8], c: Connection, tcp_len: usize) -> (&[u8], [u8; 8]) {
    let addresses = if c.v6 { &p[8..40] } else { &p[12..20] };
    let [_, _, hi, lo] = (tcp_len as u32).to_be_bytes();
    (addresses, [0, 0, hi, lo, 0, 0, 0, PROTO_TCP])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    /// NOP, NOP, timestamps: a data offset of 32 bytes, as Linux sends.
    const OPTIONS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

    /// Recompute the IPv4 header checksum (if IPv4) and the TCP checksum.
    fn fix_checksums(p: &mut [u8]) {
        let c = connection(p).expect("a TCP packet");
        let iph = c.ip_header_len;
        if !c.v6 {
            p[10..12].fill(0);
            let sum = checksum(&[&p[..iph]]);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        p[iph + 16..iph + 18].fill(0);
        let (addresses, length_protocol) = pseudo_header(p, c, p.len() - iph);
        let sum = checksum(&[addresses, &length_protocol, &p[iph..]]);
        p[iph + 16..iph + 18].copy_from_slice(&sum.to_be_bytes());
    }

    /// A valid segment of one flow: `seq`, `payload` bytes (a pattern of `seq`), ACK (and PSH).
    fn segment(v6: bool, seq: u32, payload: usize, psh: bool) -> Vec<u8> {
        let iph = if v6 { 40 } else { 20 };
        let hlen = iph + 20 + OPTIONS.len();
        let mut p = vec![0u8; hlen + payload];
        if v6 {
            p[..4].copy_from_slice(&[0x60, 0x0b, 0xcd, 0xef]);
            p[4..6].copy_from_slice(&((hlen + payload - 40) as u16).to_be_bytes());
            p[6] = PROTO_TCP;
            p[7] = 64;
            p[8..24].copy_from_slice(&[0xfd, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 1]);
            p[24..40].copy_from_slice(&[0xfd, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 2]);
        } else {
            p[..10].copy_from_slice(&[0x45, 0x02, 0, 0, 0x12, 0x34, IPV4_DF, 0, 64, PROTO_TCP]);
            p[2..4].copy_from_slice(&((hlen + payload) as u16).to_be_bytes());
            p[12..20].copy_from_slice(&[10, 250, 0, 1, 10, 250, 0, 2]);
        }
        let t = &mut p[iph..];
        t[..4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        t[12] = (((20 + OPTIONS.len()) / 4) << 4) as u8;
        t[13] = if psh { TCP_ACK | TCP_PSH } else { TCP_ACK };
        t[14..16].copy_from_slice(&502u16.to_be_bytes());
        t[20..32].copy_from_slice(&OPTIONS);
        for (i, byte) in t[32..].iter_mut().enumerate() {
            *byte = (seq as usize + i) as u8;
        }
        fix_checksums(&mut p);
        p
    }

    /// The consecutive segments of `sizes` from `seq`, PSH on the last if `psh`.
    fn flow(v6: bool, seq: u32, sizes: &[usize], psh: bool) -> Vec<Vec<u8>> {
        let mut next = seq;
        let mut packets = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            packets.push(segment(v6, next, size, psh && i == sizes.len() - 1));
            next = next.wrapping_add(size as u32);
        }
        packets
    }

    /// Each write of the batch, filled in.
    fn writes(packets: &[Vec<u8>]) -> (Vec<Vec<usize>>, Vec<Vec<u8>>) {
        let slices: Vec<&[u8]> = packets.iter().map(|p| p.as_slice()).collect();
        let plan = Plan::new(&slices);
        let mut out = Vec::new();
        for (index, write) in plan.writes().iter().enumerate() {
            let mut buffer = vec![0xeeu8; write.size()];
            plan.write_into(index, &mut buffer);
            out.push(buffer);
        }
        let indices = plan.writes().iter().map(|w| w.packets().to_vec()).collect();
        (indices, out)
    }

    fn le16(bytes: &[u8], at: usize) -> usize {
        usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
    }

    fn check_super_packet(v6: bool, packets: &[Vec<u8>], write: &[u8], psh: bool) {
        let iph = if v6 { 40 } else { 20 };
        let hlen = iph + 32;
        let (header, body) = write.split_at(VNET_HDR_LEN);
        let payload: Vec<u8> = packets.iter().flat_map(|p| p[hlen..].to_vec()).collect();
        assert_eq!(header[0], F_NEEDS_CSUM);
        assert_eq!(header[1], if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
        assert_eq!(le16(header, 2), hlen);
        assert_eq!(le16(header, 4), packets[0].len() - hlen);
        assert_eq!(le16(header, 6), iph);
        assert_eq!(le16(header, 8), 16);
        assert_eq!(body.len(), hlen + payload.len());
        assert_eq!(&body[hlen..], payload.as_slice());
        if v6 {
            assert_eq!(
                usize::from(u16::from_be_bytes([body[4], body[5]])),
                body.len() - 40
            );
        } else {
            assert_eq!(
                usize::from(u16::from_be_bytes([body[2], body[3]])),
                body.len()
            );
            assert_eq!(checksum(&[&body[..20]]), 0, "IPv4 header checksum");
        }
        // Headers as the first segment's, but for lengths, checksums and PSH.
        let mut expected = packets[0][..hlen].to_vec();
        expected[iph + 13] |= if psh { TCP_PSH } else { 0 };
        let unchanged = |at: usize| !(2..6).contains(&at) && !(10..12).contains(&at);
        let fields = (0..hlen).filter(|&at| unchanged(at) && !(iph + 16..iph + 18).contains(&at));
        for at in fields {
            assert_eq!(body[at], expected[at], "header byte {at}");
        }
        let tcp_len = (body.len() - iph) as u64;
        let addresses = if v6 { &body[8..40] } else { &body[12..20] };
        let mut sum = 6 + tcp_len;
        for word in addresses.chunks(2) {
            sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(
            u16::from_be_bytes([body[iph + 16], body[iph + 17]]),
            sum as u16
        );
    }

    #[test]
    fn consecutive_full_segments_become_one_super_packet() {
        for v6 in [false, true] {
            for psh in [false, true] {
                let packets = flow(v6, 7_000, &[MSS, MSS, MSS, 300], psh);
                let (indices, out) = writes(&packets);
                assert_eq!(indices, vec![vec![0, 1, 2, 3]]);
                check_super_packet(v6, &packets, &out[0], psh);
            }
        }
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let packets = flow(false, u32::MAX - 1500, &[MSS, MSS, MSS], false);
        let (indices, out) = writes(&packets);
        assert_eq!(indices, vec![vec![0, 1, 2]]);
        check_super_packet(false, &packets, &out[0], false);
    }

    #[test]
    fn a_psh_segment_ends_its_run_and_the_next_opens_one() {
        let mut packets = flow(false, 1, &[MSS, MSS], true);
        packets.extend(flow(false, 1 + 2 * MSS as u32, &[MSS, MSS], false));
        let (indices, out) = writes(&packets);
        assert_eq!(indices, vec![vec![0, 1], vec![2, 3]]);
        check_super_packet(false, &packets[..2], &out[0], true);
        check_super_packet(false, &packets[2..], &out[1], false);
        assert_eq!(out[1][VNET_HDR_LEN + 20 + 13], TCP_ACK);
    }

    #[test]
    fn a_single_segment_and_other_packets_are_written_as_they_came() {
        let mut udp = segment(false, 1, 100, false);
        udp[9] = 17;
        let packets = vec![segment(true, 1, MSS, false), udp, vec![0x45; 3]];
        let (indices, out) = writes(&packets);
        assert_eq!(indices, vec![vec![0], vec![1], vec![2]]);
        for (packet, write) in packets.iter().zip(&out) {
            assert_eq!(write[..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
            assert_eq!(&write[VNET_HDR_LEN..], packet.as_slice());
        }
    }

    #[test]
    fn empty_packets_are_left_out() {
        let packets = vec![Vec::new(), segment(false, 1, MSS, false), Vec::new()];
        let (indices, _) = writes(&packets);
        assert_eq!(indices, vec![vec![1]]);
    }

    #[test]
    fn flows_interleave_and_each_keeps_its_order() {
        let a = flow(false, 1, &[MSS, MSS, MSS], false);
        let b = flow(true, 1, &[MSS, MSS], false);
        let mut pure_ack = segment(false, 1 + 2 * MSS as u32, 0, false);
        fix_checksums(&mut pure_ack);
        let packets = vec![
            a[0].clone(),
            b[0].clone(),
            a[1].clone(),
            b[1].clone(),
            pure_ack,
            a[2].clone(),
        ];
        let (indices, _) = writes(&packets);
        // a[2] may not jump over its own connection's pure ACK.
        assert_eq!(indices, vec![vec![0, 2], vec![1, 3], vec![4], vec![5]]);
    }

    type Edit = fn(&mut Vec<u8>);

    /// One way each to break a rule in the second of two coalescable segments (checksums are
    /// fixed after the edit unless the edit is to a checksum).
    const REFUSALS_V4: &[(&str, Edit, bool)] = &[
        ("IPv4 options (IHL 6)", |p| p[0] = 0x46, true),
        ("IPv4 header checksum", |p| p[11] ^= 1, false),
        ("IPv4 MF", |p| p[6] |= IPV4_MF, true),
        ("IPv4 fragment offset", |p| p[7] = 1, true),
        ("IPv4 DF clear", |p| p[6] &= !IPV4_DF, true),
        ("IPv4 total length short", |p| p[3] -= 1, true),
        ("IPv4 packet longer than total length", |p| p.push(0), false),
        ("IPv4 TOS", |p| p[1] ^= 1, true),
        ("IPv4 reserved bit", |p| p[6] |= 0x80, true),
        ("IPv4 TTL", |p| p[8] -= 1, true),
        ("IPv4 source", |p| p[15] ^= 1, true),
        ("IPv4 destination", |p| p[19] ^= 1, true),
        ("protocol UDP", |p| p[9] = 17, true),
        ("source port", |p| p[21] ^= 1, true),
        ("destination port", |p| p[23] ^= 1, true),
        ("sequence gap", |p| p[27] ^= 1, true),
        ("ACK number", |p| p[31] ^= 1, true),
        ("TCP reserved bits", |p| p[32] |= 1, true),
        ("TCP flags FIN|ACK", |p| p[33] |= 0x01, true),
        ("TCP flags SYN|ACK", |p| p[33] |= 0x02, true),
        ("TCP flags RST|ACK", |p| p[33] |= 0x04, true),
        ("TCP flags URG|ACK", |p| p[33] |= 0x20, true),
        ("TCP flags ECE|ACK", |p| p[33] |= 0x40, true),
        ("TCP flags CWR|ACK", |p| p[33] |= 0x80, true),
        ("TCP flags without ACK", |p| p[33] = TCP_PSH, true),
        ("window", |p| p[35] ^= 1, true),
        ("TCP checksum", |p| p[37] ^= 1, false),
        ("urgent pointer", |p| p[39] = 1, true),
        ("options", |p| p[51] ^= 1, true),
        ("data offset", |p| p[32] = 0x70, true),
        ("data offset below 20", |p| p[32] = 0x40, true),
        ("data offset past the packet", |p| p.truncate(20 + 30), true),
        ("empty payload", |p| p.truncate(52), true),
        ("bigger than the first", |p| p.push(0), true),
    ];

    const REFUSALS_V6: &[(&str, Edit, bool)] = &[
        ("IPv6 traffic class", |p| p[1] ^= 0x10, true),
        ("IPv6 flow label", |p| p[3] ^= 1, true),
        ("IPv6 payload length", |p| p[5] -= 1, true),
        ("IPv6 next header not TCP", |p| p[6] = 0, true),
        ("IPv6 hop limit", |p| p[7] -= 1, true),
        ("IPv6 source", |p| p[23] ^= 1, true),
        ("IPv6 destination", |p| p[39] ^= 1, true),
        ("window", |p| p[55] ^= 1, true),
        ("TCP checksum", |p| p[57] ^= 1, false),
        ("shorter than 60 bytes", |p| p.truncate(59), true),
    ];

    #[test]
    fn each_rule_refuses_its_segment() {
        for (v6, table) in [(false, REFUSALS_V4), (true, REFUSALS_V6)] {
            for &(rule, edit, fix) in table {
                let mut packets = flow(v6, 1, &[MSS, MSS], false);
                edit(&mut packets[1]);
                let len = packets[1].len();
                if fix && connection(&packets[1]).is_some() && len >= 40 {
                    // Keep the lengths what arrived unless the rule is about them.
                    if !rule.contains("length") {
                        let (at, value) = if v6 { (4, len - 40) } else { (2, len) };
                        packets[1][at..at + 2].copy_from_slice(&(value as u16).to_be_bytes());
                    }
                    if !rule.contains("data offset") || rule.contains("below") {
                        fix_checksums(&mut packets[1]);
                    }
                }
                let (indices, out) = writes(&packets);
                assert_eq!(indices, vec![vec![0], vec![1]], "{rule}");
                assert_eq!(&out[1][VNET_HDR_LEN..], packets[1].as_slice(), "{rule}");
            }
        }
    }

    #[test]
    fn a_run_that_is_not_all_full_size_takes_no_more() {
        let packets = flow(false, 1, &[MSS, 500, 500], false);
        let (indices, _) = writes(&packets);
        assert_eq!(indices, vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn a_run_stops_at_65535_bytes() {
        // 52 bytes of headers and 65 payloads of 1000: 65,052 bytes; a 66th would not fit.
        let packets = flow(false, 1, &[MSS; 66], false);
        let (indices, out) = writes(&packets);
        assert_eq!(indices, vec![(0..65).collect(), vec![65]]);
        assert_eq!(out[0].len(), VNET_HDR_LEN + 52 + 65 * MSS);
        let big = flow(true, 1, &[65535 - 72, 1], false);
        assert_eq!(writes(&big).0, vec![vec![0], vec![1]]);
    }

    /// A small deterministic generator (xorshift64*), so the fuzz test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn no_input_panics_and_every_packet_is_written_once() {
        let mut rng = Rng(0x5eed_cafe_f00d_0001);
        let real: Vec<Vec<u8>> = [false, true]
            .iter()
            .flat_map(|&v6| flow(v6, u32::MAX - 2000, &[MSS, MSS, MSS, 10], true))
            .collect();
        let mut coalesced = 0;
        for _ in 0..3000 {
            let mut packets = Vec::new();
            for _ in 0..rng.below(12) {
                let mut p = match rng.below(4) {
                    0 => (0..rng.below(120)).map(|_| rng.next() as u8).collect(),
                    1 => {
                        // A flow's segments in order, to coalesce before the mutated one.
                        let half = rng.below(2) * real.len() / 2;
                        packets.extend_from_slice(&real[half..half + rng.below(4)]);
                        real[rng.below(real.len())].clone()
                    }
                    _ => real[rng.below(real.len())].clone(),
                };
                if !p.is_empty() && rng.below(2) == 0 {
                    p[0] = [0x45, 0x46, 0x4f, 0x60, 0x40][rng.below(5)];
                }
                for _ in 0..rng.below(4) {
                    if !p.is_empty() {
                        let at = rng.below(p.len().min(80));
                        p[at] = rng.next() as u8;
                    }
                }
                if rng.below(4) == 0 {
                    p.truncate(rng.below(p.len() + 1));
                }
                if rng.below(3) == 0
                    && connection(&p).is_some_and(|c| p.len() >= c.ip_header_len + 20)
                {
                    fix_checksums(&mut p);
                }
                packets.push(p);
            }
            let (indices, out) = writes(&packets);
            coalesced += indices.iter().filter(|w| w.len() > 1).count();
            let mut seen: Vec<usize> = indices.concat();
            seen.sort_unstable();
            let present: Vec<usize> = (0..packets.len())
                .filter(|&i| !packets[i].is_empty())
                .collect();
            assert_eq!(seen, present);
            for (write, indices) in out.iter().zip(&indices) {
                let ip_len: usize = packets[indices[0]].len()
                    + indices[1..]
                        .iter()
                        .map(|&i| packets[i].len() - le16(write, 2))
                        .sum::<usize>();
                assert_eq!(write.len(), VNET_HDR_LEN + ip_len);
            }
        }
        assert!(
            coalesced > 100,
            "the mutated real segments still coalesce: {coalesced}"
        );
    }
}
