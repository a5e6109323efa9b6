//! The legacy_tcp link (PROTOCOL.md §2): the handshake, and the frames of each direction.
//!
//! Theory of operation. Each direction of a link has its own IV, chosen by its sender, and from
//! it an `enc_key` and a `mac_key`. The sender turns each mesh packet `m` into the plaintext
//! `len(m) u16 || m || multispeck(mac_key, m)` and XORs it with the direction's keystream, which
//! runs on from frame to frame. So the receiver can decrypt every byte as it arrives, whatever
//! the framing; `Opener` does exactly that and keeps only the decrypted tail of an unfinished
//! frame. After a MAC mismatch nothing that follows can be trusted, so the opener stays failed.

use crate::constants::{HELLO_LEN, IV_LEN, KEY_LEN, LENGTH_LEN, MAC_LEN, MAX_PACKET_LEN};
use crate::error::Error;
use crate::multispeck::{multispeck, MacKey};
use crate::packet::write_header;
use crate::speck::Keystream;

pub fn keyfinder(psk: &[u8], iv: &[u8; IV_LEN]) -> [u8; MAC_LEN] {
    multispeck(&[psk, iv, b"keyfinder"])
}

/// `iv || keyfinder(psk, iv)`: what each side sends first.
pub fn make_hello(psk: &[u8], iv: &[u8; IV_LEN]) -> [u8; HELLO_LEN] {
    let mut hello = [0u8; HELLO_LEN];
    hello[..IV_LEN].copy_from_slice(iv);
    hello[IV_LEN..].copy_from_slice(&keyfinder(psk, iv));
    hello
}

/// Index of the first PSK whose keyfinder matches the peer's hello.
pub fn find_psk(hello: &[u8; HELLO_LEN], psks: &[&[u8]]) -> Option<usize> {
    let (iv, theirs) = hello.split_at(IV_LEN);
    let iv: &[u8; IV_LEN] = iv.try_into().expect("16 bytes");
    psks.iter()
        .position(|psk| equal_in_constant_time(&keyfinder(psk, iv), theirs))
}

/// `(enc_key, mac_key)` of the direction whose sender chose `iv`.
pub fn derive_keys(psk: &[u8], iv: &[u8; IV_LEN]) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
    (
        multispeck(&[psk, iv, b"enc_key"]),
        multispeck(&[psk, iv, b"mac_key"]),
    )
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bytes on the wire of a frame carrying a packet of `packet_len` bytes.
pub const fn frame_len(packet_len: usize) -> usize {
    LENGTH_LEN + packet_len + MAC_LEN
}

/// Wire bytes of packets of `packet_lens` (each `extra` bytes longer) in frames of a 2-byte
/// length, the packet and a `tail`-byte MAC or tag, or `PacketTooLong` for the first that a
/// frame's length cannot say: the sizing of both link codecs.
pub(crate) fn framed_len(
    packet_lens: impl Iterator<Item = usize>,
    extra: usize,
    tail: usize,
) -> Result<usize, Error> {
    packet_lens
        .map(|len| len + extra)
        .try_fold(0, |total, len| {
            if len > MAX_PACKET_LEN {
                Err(Error::PacketTooLong(len))
            } else {
                Ok(total + LENGTH_LEN + len + tail)
            }
        })
}

/// What the sealers of both kinds of link share (legacy_tcp's `Sealer`, secure_tcp's
/// `SecureSealer`): each seals into a buffer its caller sized with `sealed_len`, which cannot fail
/// halfway and leave the direction's keystream or frame counter out of step, and the conveniences
/// that size the buffer themselves come with the trait.
pub trait FrameSealer {
    /// Bytes after each frame's packet: legacy_tcp's MAC or secure_tcp's tag.
    const TAIL: usize;

    /// Seals `packets` into `out`, which must be exactly `sealed_len` bytes and may start
    /// uninitialised.
    fn seal_batch_into(&mut self, packets: &[&[u8]], out: &mut [u8]);

    /// Wraps each IP packet as `timestamp_ms || 3 || ip_packet` and seals them into `out`, which
    /// must be exactly `sealed_len(ip lengths, HEADER_LEN)` bytes.
    fn seal_data_batch_into(&mut self, ip_packets: &[&[u8]], timestamp_ms: u64, out: &mut [u8]);

    /// Wire bytes of `packets` sealed, or `PacketTooLong` for the first that cannot be.
    /// `extra` is added to each packet's length (the data header of `seal_data_batch_into`).
    fn sealed_len(packet_lens: impl Iterator<Item = usize>, extra: usize) -> Result<usize, Error> {
        framed_len(packet_lens, extra, Self::TAIL)
    }

    fn seal(&mut self, packet: &[u8]) -> Result<Vec<u8>, Error> {
        self.seal_batch(&[packet])
    }

    fn seal_batch(&mut self, packets: &[&[u8]]) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; Self::sealed_len(packets.iter().map(|p| p.len()), 0)?];
        self.seal_batch_into(packets, &mut out);
        Ok(out)
    }

    fn seal_data_batch(
        &mut self,
        ip_packets: &[&[u8]],
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, Error> {
        let lens = ip_packets.iter().map(|p| p.len());
        let mut out = vec![0u8; Self::sealed_len(lens, crate::constants::HEADER_LEN)?];
        self.seal_data_batch_into(ip_packets, timestamp_ms, &mut out);
        Ok(out)
    }
}

/// Seals mesh packets into frames for the direction whose IV we chose.
#[derive(Clone)]
pub struct Sealer {
    keystream: Keystream,
    mac: MacKey,
}

impl Sealer {
    pub fn new(psk: &[u8], iv: &[u8; IV_LEN]) -> Self {
        let (enc_key, mac_key) = derive_keys(psk, iv);
        Sealer {
            keystream: Keystream::new(&enc_key),
            mac: MacKey::new(&mac_key),
        }
    }

    /// `out` holds plaintext frames with room for their MACs: fill in the MACs, then encrypt.
    fn finish(&mut self, out: &mut [u8]) {
        let bodies = frame_bodies(out, out.len()).0;
        let macs = self
            .mac
            .mac_many(&bodies.iter().map(|r| &out[r.clone()]).collect::<Vec<_>>());
        for (body, mac) in bodies.iter().zip(macs) {
            out[body.end..body.end + MAC_LEN].copy_from_slice(&mac);
        }
        self.keystream.apply(out);
    }
}

impl FrameSealer for Sealer {
    const TAIL: usize = MAC_LEN;

    /// The caller has checked the lengths, so nothing here can fail and desynchronise the
    /// keystream. The MACs are computed from the packets where they lie, and each byte is
    /// encrypted on its way into `out`, so `out` is written once and never read.
    fn seal_batch_into(&mut self, packets: &[&[u8]], out: &mut [u8]) {
        let macs = self.mac.mac_many(packets);
        let mut at = 0;
        for (packet, mac) in packets.iter().zip(&macs) {
            let frame = &mut out[at..at + frame_len(packet.len())];
            let (length, rest) = frame.split_at_mut(LENGTH_LEN);
            let (body, mac_out) = rest.split_at_mut(packet.len());
            let ks = &mut self.keystream;
            ks.apply_copy(&(packet.len() as u16).to_le_bytes(), length);
            ks.apply_copy(packet, body);
            ks.apply_copy(mac, mac_out);
            at += frame.len();
        }
    }

    fn seal_data_batch_into(&mut self, ip_packets: &[&[u8]], timestamp_ms: u64, out: &mut [u8]) {
        use crate::constants::{CMD_DATA, HEADER_LEN};
        let mut at = 0;
        for ip in ip_packets {
            let len = HEADER_LEN + ip.len();
            out[at..at + LENGTH_LEN].copy_from_slice(&(len as u16).to_le_bytes());
            let body = &mut out[at + LENGTH_LEN..][..len];
            write_header(body, timestamp_ms, CMD_DATA);
            body[HEADER_LEN..].copy_from_slice(ip);
            at += frame_len(len);
        }
        self.finish(out);
    }
}

/// Body ranges of the complete frames at the start of `plain[..end]`, and where they stop.
fn frame_bodies(plain: &[u8], end: usize) -> (Vec<std::ops::Range<usize>>, usize) {
    let mut bodies = Vec::new();
    let mut at = 0;
    while end - at >= LENGTH_LEN {
        let len = u16::from_le_bytes([plain[at], plain[at + 1]]) as usize;
        if end - at < frame_len(len) {
            break;
        }
        bodies.push(at + LENGTH_LEN..at + LENGTH_LEN + len);
        at += frame_len(len);
    }
    (bodies, at)
}

/// Where a packet's body is decrypted to: a `Vec<u8>`, or (in the Python module) a `bytes`
/// object made for it, so that a packet crosses memory once between the stream and its owner.
pub trait FrameBody {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl FrameBody for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// The frame an opener is in the middle of: a 2-byte length, a body as long as it says, then a
/// tail of `TAIL` bytes (legacy_tcp's MAC, secure_tcp's tag). Both link codecs frame this way;
/// they differ in how bytes come in (decrypted on the way, or copied as they are) and in the
/// length's byte order, which the caller of `read` supplies.
enum Partial<B, const TAIL: usize> {
    /// `have` bytes of the 2-byte length.
    Length {
        bytes: [u8; LENGTH_LEN],
        have: usize,
    },
    /// `have` bytes of the body, which is as long as the length said.
    Body { body: B, have: usize },
    /// The whole body and `have` bytes of its tail.
    Tail {
        body: B,
        tail: [u8; TAIL],
        have: usize,
    },
}

impl<B, const TAIL: usize> Partial<B, TAIL> {
    /// Nothing of the next frame read yet.
    fn next_frame() -> Self {
        Partial::Length {
            bytes: [0; LENGTH_LEN],
            have: 0,
        }
    }
}

/// Reassembles frames from a stream fed in pieces of any size, holding at most one unfinished
/// frame. Each byte goes once from the piece to where it belongs: the length and tail into the
/// reader, the body into a buffer of `B` made for it once its length is known.
pub(crate) struct FrameReader<B, const TAIL: usize> {
    partial: Partial<B, TAIL>,
}

impl<B: FrameBody, const TAIL: usize> FrameReader<B, TAIL> {
    pub(crate) fn new() -> Self {
        FrameReader {
            partial: Partial::next_frame(),
        }
    }

    /// Bytes of an unfinished frame held back (at most one frame's worth).
    pub(crate) fn buffered(&self) -> usize {
        match &self.partial {
            Partial::Length { have, .. } => *have,
            Partial::Body { have, .. } => LENGTH_LEN + have,
            Partial::Tail { body, have, .. } => LENGTH_LEN + body.bytes().len() + have,
        }
    }

    /// Takes bytes from the front of `rest` until a frame is complete, and returns its body and
    /// tail; None once `rest` is empty first. `take(rest, into)` moves as much of `rest` as fits
    /// into `into` (decrypting it or not) and returns how much; `length` reads the length field
    /// as `take` left it; `new_body(length)` makes the body's buffer, whose contents `take`
    /// overwrites. An empty body is complete as soon as its length is: the next byte (the first
    /// of its tail) moves the frame on.
    pub(crate) fn read(
        &mut self,
        rest: &mut &[u8],
        length: impl Fn([u8; LENGTH_LEN]) -> usize,
        new_body: &mut impl FnMut(usize) -> B,
        take: &mut impl FnMut(&mut &[u8], &mut [u8]) -> usize,
    ) -> Option<(B, [u8; TAIL])> {
        while !rest.is_empty() {
            self.partial = match std::mem::replace(&mut self.partial, Partial::next_frame()) {
                Partial::Length { mut bytes, have } => {
                    let have = have + take(rest, &mut bytes[have..]);
                    if have < LENGTH_LEN {
                        Partial::Length { bytes, have }
                    } else {
                        let body = new_body(length(bytes));
                        Partial::Body { body, have: 0 }
                    }
                }
                Partial::Body { mut body, have } => {
                    let have = have + take(rest, &mut body.bytes_mut()[have..]);
                    if have < body.bytes().len() {
                        Partial::Body { body, have }
                    } else {
                        let tail = [0; TAIL];
                        Partial::Tail {
                            body,
                            tail,
                            have: 0,
                        }
                    }
                }
                Partial::Tail {
                    body,
                    mut tail,
                    have,
                } => {
                    let have = have + take(rest, &mut tail[have..]);
                    if have < TAIL {
                        Partial::Tail { body, tail, have }
                    } else {
                        return Some((body, tail));
                    }
                }
            };
        }
        None
    }
}

/// Opens the frames of the direction whose IV the peer chose, fed the stream in any pieces.
///
/// Each byte is decrypted on its way from the piece to where it belongs: the length and MAC
/// into the opener, the body into a buffer of `B` made for it once its length is known. A frame
/// cut by the end of a piece waits in the opener for the next piece, so at most one frame is
/// held back. Bodies are handed out only after every MAC of the piece checks out.
pub struct Opener<B = Vec<u8>> {
    keystream: Keystream,
    mac: MacKey,
    reader: FrameReader<B, MAC_LEN>,
    failed: bool,
}

impl<B: FrameBody> Opener<B> {
    pub fn new(psk: &[u8], iv: &[u8; IV_LEN]) -> Self {
        let (enc_key, mac_key) = derive_keys(psk, iv);
        Opener {
            keystream: Keystream::new(&enc_key),
            mac: MacKey::new(&mac_key),
            reader: FrameReader::new(),
            failed: false,
        }
    }

    /// Bytes of an unfinished frame held back (at most one frame's worth).
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Every complete, verified packet the stream holds after `chunk`, in order, each body in
    /// a buffer from `new_body(length)`, whose contents are overwritten.
    /// A MAC mismatch fails this call and every later one.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut new_body: impl FnMut(usize) -> B,
    ) -> Result<Vec<B>, Error> {
        if self.failed {
            return Err(Error::BadMac);
        }
        let mut complete: Vec<(B, [u8; MAC_LEN])> = Vec::new();
        let mut rest = chunk;
        let keystream = &mut self.keystream;
        let mut decrypt = |rest: &mut &[u8], into: &mut [u8]| {
            let n = into.len().min(rest.len());
            let (now, later) = rest.split_at(n);
            keystream.apply_copy(now, &mut into[..n]);
            *rest = later;
            n
        };
        let length = |bytes| u16::from_le_bytes(bytes) as usize;
        while let Some(frame) = self
            .reader
            .read(&mut rest, length, &mut new_body, &mut decrypt)
        {
            complete.push(frame);
        }
        let bodies: Vec<&[u8]> = complete.iter().map(|(body, _)| body.bytes()).collect();
        let macs = self.mac.mac_many(&bodies);
        let all_good = complete
            .iter()
            .zip(&macs)
            .fold(true, |good, ((_, theirs), ours)| {
                good & equal_in_constant_time(ours, theirs)
            });
        if !all_good {
            self.failed = true;
            self.reader = FrameReader::new();
            return Err(Error::BadMac);
        }
        Ok(complete.into_iter().map(|(body, _)| body).collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_vectors::{hex, vectors};

    // Shared with secure.rs's tests: both codecs are checked on the same packets and pieces.
    pub(crate) fn vec_body(len: usize) -> Vec<u8> {
        vec![0; len]
    }

    fn iv(v: &serde_json::Value) -> [u8; IV_LEN] {
        hex(v).try_into().unwrap()
    }

    #[test]
    fn handshake_vectors() {
        for v in vectors()["handshake"].as_array().unwrap() {
            let (psk, iv) = (hex(&v["psk"]), iv(&v["iv"]));
            let (enc_key, mac_key) = derive_keys(&psk, &iv);
            assert_eq!(keyfinder(&psk, &iv).to_vec(), hex(&v["keyfinder"]));
            assert_eq!(enc_key.to_vec(), hex(&v["enc_key"]));
            assert_eq!(mac_key.to_vec(), hex(&v["mac_key"]));
            let hello = make_hello(&psk, &iv);
            assert_eq!(find_psk(&hello, &[b"wrong", &psk, &psk]), Some(1));
            assert_eq!(find_psk(&hello, &[b"wrong"]), None);
        }
    }

    struct StreamVector {
        psk: Vec<u8>,
        iv: [u8; IV_LEN],
        packets: Vec<Vec<u8>>,
        wire: Vec<u8>,
    }

    fn stream_vectors() -> Vec<StreamVector> {
        let all = vectors()["stream"].as_array().unwrap();
        all.iter()
            .map(|v| StreamVector {
                psk: hex(&v["psk"]),
                iv: iv(&v["iv"]),
                packets: v["packets"].as_array().unwrap().iter().map(hex).collect(),
                wire: hex(&v["wire"]),
            })
            .collect()
    }

    pub(crate) fn refs(packets: &[Vec<u8>]) -> Vec<&[u8]> {
        packets.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn stream_vectors_seal() {
        for v in stream_vectors() {
            let frames = &v.wire[HELLO_LEN..];
            assert_eq!(v.wire[..HELLO_LEN], make_hello(&v.psk, &v.iv));
            assert_eq!(
                Sealer::new(&v.psk, &v.iv)
                    .seal_batch(&refs(&v.packets))
                    .unwrap(),
                frames
            );
            let mut one_by_one = Sealer::new(&v.psk, &v.iv);
            let sealed: Vec<u8> = v
                .packets
                .iter()
                .flat_map(|p| one_by_one.seal(p).unwrap())
                .collect();
            assert_eq!(sealed, frames);
        }
    }

    fn open_in_pieces(v: &StreamVector, cuts: &[usize]) -> Vec<Vec<u8>> {
        let frames = &v.wire[HELLO_LEN..];
        let mut opener = Opener::new(&v.psk, &v.iv);
        let mut got = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([frames.len()].iter()) {
            got.extend(opener.feed(&frames[from..cut], vec_body).unwrap());
            assert!(opener.buffered() <= frame_len(MAX_PACKET_LEN));
            from = cut;
        }
        assert_eq!(opener.buffered(), 0);
        got
    }

    #[test]
    fn stream_vectors_open_split_at_every_offset() {
        for v in stream_vectors() {
            let len = v.wire.len() - HELLO_LEN;
            assert_eq!(open_in_pieces(&v, &[]), v.packets);
            for cut in 0..=len {
                assert_eq!(open_in_pieces(&v, &[cut]), v.packets, "cut at {cut}");
            }
            let every_byte: Vec<usize> = (1..len).collect();
            assert_eq!(open_in_pieces(&v, &every_byte), v.packets);
            for (a, b) in [(1, 2), (3, 40), (17, 18), (2, len - 1)] {
                assert_eq!(open_in_pieces(&v, &[a, b]), v.packets);
            }
        }
    }

    pub(crate) fn sample_packets() -> Vec<Vec<u8>> {
        (0..50usize)
            .map(|i| (0..(i * 131) % 1500).map(|j| (i ^ j) as u8).collect())
            .collect()
    }

    /// Everything `feed` opens from `wire` handed over in uneven pieces: some hold many frames,
    /// some end inside a length or a MAC or tag.
    pub(crate) fn open_in_uneven_pieces(
        wire: &[u8],
        mut feed: impl FnMut(&[u8]) -> Vec<Vec<u8>>,
    ) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut from = 0;
        for (n, size) in [1usize, 5000, 3, 17, 9000, 1].iter().cycle().enumerate() {
            let to = (from + size + n).min(wire.len());
            got.extend(feed(&wire[from..to]));
            from = to;
            if from == wire.len() {
                break;
            }
        }
        got
    }

    #[test]
    fn sealer_and_opener_agree_across_batches() {
        let packets = sample_packets();
        let mut sealer = Sealer::new(b"psk", &[7; IV_LEN]);
        let mut wire = sealer.seal_batch(&refs(&packets[..20])).unwrap();
        wire.extend(sealer.seal_batch(&refs(&packets[20..])).unwrap());
        let mut opener = Opener::new(b"psk", &[7; IV_LEN]);
        let got = open_in_uneven_pieces(&wire, |piece| opener.feed(piece, vec_body).unwrap());
        assert_eq!(got, packets);
    }

    #[test]
    fn data_batch_is_header_then_ip_packet() {
        let ips = [vec![0x45; 28], vec![0x60; 48], vec![]];
        let mut batch = Sealer::new(b"k", &[1; IV_LEN]);
        let wire = batch
            .seal_data_batch(&refs(&ips), 0x0102_0304_0506)
            .unwrap();
        let mut opener = Opener::new(b"k", &[1; IV_LEN]);
        let got = opener.feed(&wire, vec_body).unwrap();
        assert_eq!(got.len(), 3);
        for (packet, ip) in got.iter().zip(&ips) {
            assert_eq!(
                crate::packet::parse_header(packet),
                Some((0x0102_0304_0506, 3))
            );
            assert_eq!(&packet[9..], ip.as_slice());
        }
    }

    #[test]
    fn too_long_packet_is_refused_without_touching_the_stream() {
        let mut sealer = Sealer::new(b"k", &[1; IV_LEN]);
        let big = vec![0u8; MAX_PACKET_LEN + 1];
        assert_eq!(
            sealer.seal(&big),
            Err(Error::PacketTooLong(MAX_PACKET_LEN + 1))
        );
        let just_fits = vec![0u8; MAX_PACKET_LEN - 9];
        assert!(sealer.seal_data_batch(&[&just_fits], 1).is_ok());
        assert!(sealer
            .seal_data_batch(&[&big[..MAX_PACKET_LEN - 8]], 1)
            .is_err());
        let wire = sealer.seal(b"after").unwrap();
        let mut fresh = Sealer::new(b"k", &[1; IV_LEN]);
        fresh.seal_data_batch(&[&just_fits], 1).unwrap();
        assert_eq!(fresh.seal(b"after").unwrap(), wire);
    }

    #[test]
    fn every_bit_flip_is_caught_and_the_failure_sticks() {
        let packets = sample_packets()[..4].to_vec();
        let wire = Sealer::new(b"psk", &[3; IV_LEN])
            .seal_batch(&refs(&packets))
            .unwrap();
        for byte in 0..wire.len() {
            for bit in [0, 3, 7] {
                let mut bad = wire.clone();
                bad[byte] ^= 1 << bit;
                let mut opener = Opener::new(b"psk", &[3; IV_LEN]);
                // A flip in a length may leave the stream waiting for more instead of failing.
                match opener.feed(&bad, vec_body) {
                    Err(Error::BadMac) => {}
                    Ok(got) => {
                        assert!(got.len() < packets.len(), "flip at {byte}.{bit} not caught");
                        assert_eq!(got, refs(&packets[..got.len()]));
                        let got = got.len();
                        let rest = opener.feed(&vec![0u8; 70000], vec_body);
                        assert_eq!(
                            rest.map(|r| r.len() + got),
                            Err(Error::BadMac),
                            "at {byte}.{bit}"
                        );
                    }
                    Err(e) => panic!("{e}"),
                }
                assert_eq!(opener.feed(&wire, vec_body), Err(Error::BadMac));
                assert_eq!(opener.buffered(), 0);
                assert_eq!(opener.feed(b"", vec_body), Err(Error::BadMac));
            }
        }
    }

    #[test]
    fn buffers_at_most_one_unfinished_frame() {
        let big = vec![9u8; MAX_PACKET_LEN];
        let wire = Sealer::new(b"k", &[0; IV_LEN])
            .seal_batch(&[&big, &big, b"x"])
            .unwrap();
        let mut opener = Opener::new(b"k", &[0; IV_LEN]);
        let mut count = 0;
        for piece in wire.chunks(40000) {
            count += opener.feed(piece, vec_body).unwrap().len();
            assert!(opener.buffered() < frame_len(MAX_PACKET_LEN));
        }
        assert_eq!((count, opener.buffered()), (3, 0));
    }
}
