//! The Python module `smolmesh._core`: the only file that touches pyo3. It converts arguments,
//! releases the GIL for big batches to seal, and maps `Error` onto the classes of
//! `smolmesh.errors`. Sealed frames and opened packets are written straight into the `bytes`
//! objects Python receives, never zeroed or copied first.
//! The interface is `python/smolmesh/_core.pyi`.

use crate::constants::*;
use crate::error::{sized, Error};
use crate::link::FrameSealer;
use crate::{address, dedup, gro, icmp, link, multispeck, packet, secure, speck};
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

pyo3::import_exception!(smolmesh.errors, BadMacError);

/// Batches with more bytes than this are worked on with the GIL released.
const DETACH_BYTES: usize = 16 * 1024;

impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        match error {
            Error::BadMac => BadMacError::new_err(error.to_string()),
            Error::PacketTooLong(_) | Error::WrongSize { .. } => {
                PyValueError::new_err(error.to_string())
            }
        }
    }
}

/// Holds each packet's bytes object, so the slices stay valid with the GIL released.
fn slices<'a>(packets: &'a [Bound<'_, PyBytes>]) -> Vec<&'a [u8]> {
    packets.iter().map(|p| p.as_bytes()).collect()
}

/// Each packet from byte `skip` on; ValueError if one is shorter than that.
fn skipped<'a>(packets: &'a [Bound<'_, PyBytes>], skip: usize) -> PyResult<Vec<&'a [u8]>> {
    slices(packets)
        .into_iter()
        .map(|packet| {
            packet.get(skip..).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "a packet of {} bytes has no byte {skip}",
                    packet.len()
                ))
            })
        })
        .collect()
}

/// A new `bytes` of `len` bytes whose contents are not yet written, and where they lie. Unlike
/// `PyBytes::new_with` this does not zero them, a pass that costs about what a copy does.
///
/// # Safety
/// The caller writes all `len` bytes before Python can see the object, and nothing else reads
/// or writes the buffer meanwhile (a new bytes object is the caller's alone until handed out).
unsafe fn unwritten_bytes(py: Python<'_>, len: usize) -> PyResult<(Bound<'_, PyBytes>, *mut u8)> {
    // SAFETY: FFI calls with the GIL held; a null source asks CPython for uninitialised room.
    unsafe {
        let object = ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as ffi::Py_ssize_t);
        let object = Bound::from_owned_ptr_or_err(py, object)?.cast_into_unchecked::<PyBytes>();
        let buffer = ffi::PyBytes_AsString(object.as_ptr()).cast::<u8>();
        Ok((object, buffer))
    }
}

/// A new `bytes` of `len` bytes, every one of which `fill` writes.
fn bytes_written_by<'py>(
    py: Python<'py>,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> PyResult<Bound<'py, PyBytes>> {
    // SAFETY: `fill` writes each byte before the object is returned.
    unsafe {
        let (object, buffer) = unwritten_bytes(py, len)?;
        fill(std::slice::from_raw_parts_mut(buffer, len));
        Ok(object)
    }
}

/// A packet body that the opener decrypts straight into the `bytes` object Python receives.
struct BytesBody {
    object: Py<PyBytes>,
    buffer: *mut u8,
    len: usize,
}

// SAFETY: `buffer` is the contents of `object`, which the body owns and which lives as long;
// it is written only through `&mut BytesBody`, so shared references only read it.
unsafe impl Send for BytesBody {}
unsafe impl Sync for BytesBody {}

impl BytesBody {
    fn new(py: Python<'_>, len: usize) -> Self {
        // SAFETY: the opener writes every byte of the body before it hands the object to
        // Python, and drops it unseen if the frame fails.
        let (object, buffer) = unsafe { unwritten_bytes(py, len) }.expect("memory for one packet");
        BytesBody {
            object: object.unbind(),
            buffer,
            len,
        }
    }
}

impl link::FrameBody for BytesBody {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `buffer` holds `len` bytes; the opener reads only what it has written.
        unsafe { std::slice::from_raw_parts(self.buffer, self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; no one else sees the object while the opener holds it.
        unsafe { std::slice::from_raw_parts_mut(self.buffer, self.len) }
    }
}

/// Runs `work` with the GIL released when it has at least `DETACH_BYTES` to do.
fn maybe_detach<T: Send>(py: Python<'_>, bytes: usize, work: impl FnOnce() -> T + Send) -> T {
    if bytes >= DETACH_BYTES {
        py.detach(work)
    } else {
        work()
    }
}

fn as_key(bytes: &[u8]) -> PyResult<[u8; KEY_LEN]> {
    Ok(sized("key", bytes)?)
}

fn as_iv(bytes: &[u8]) -> PyResult<[u8; IV_LEN]> {
    Ok(sized("iv", bytes)?)
}

fn as_psk(bytes: &[u8]) -> PyResult<[u8; secure::PSK_LEN]> {
    Ok(sized("psk", bytes)?)
}

fn as_secure_key(bytes: &[u8]) -> PyResult<[u8; secure::SECURE_KEY_LEN]> {
    Ok(sized("key", bytes)?)
}

#[pyfunction]
fn ernd(x: u64, y: u64, k: u64) -> (u64, u64) {
    speck::ernd(x, y, k)
}

#[pyfunction]
fn speck_round_keys(key: &[u8]) -> PyResult<Vec<u64>> {
    Ok(speck::round_keys(&as_key(key)?).to_vec())
}

#[pyfunction]
fn speck_encrypt(key: &[u8], x: u64, y: u64) -> PyResult<(u64, u64)> {
    Ok(speck::encrypt_block(
        &speck::round_keys(&as_key(key)?),
        x,
        y,
    ))
}

#[pyfunction]
fn keystream<'py>(py: Python<'py>, key: &[u8], length: usize) -> PyResult<Bound<'py, PyBytes>> {
    let mut stream = speck::Keystream::new(&as_key(key)?);
    PyBytes::new_with(py, length, |out| {
        maybe_detach(py, length, || stream.apply(out));
        Ok(())
    })
}

#[pyfunction(name = "multispeck")]
fn multispeck_py<'py>(py: Python<'py>, parts: Vec<Bound<'py, PyBytes>>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &multispeck::multispeck(&slices(&parts)))
}

#[pyfunction]
fn name_to_ipv6<'py>(name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let address = match name.cast::<PyString>() {
        Ok(text) => address::name_to_ipv6(text.to_str()?.as_bytes()),
        Err(_) => address::name_to_ipv6(name.extract::<&[u8]>()?),
    };
    Ok(PyBytes::new(name.py(), &address))
}

/// The addresses of many names (bytes) in one call: `address::names_to_ipv6`. The searches run
/// without the GIL when there is more than one.
#[pyfunction]
fn names_to_ipv6<'py>(
    py: Python<'py>,
    names: Vec<Bound<'py, PyBytes>>,
) -> Vec<Bound<'py, PyBytes>> {
    let names = slices(&names);
    let addresses = if names.len() > 1 {
        py.detach(|| address::names_to_ipv6(&names))
    } else {
        address::names_to_ipv6(&names)
    };
    addresses
        .iter()
        .map(|address| PyBytes::new(py, address))
        .collect()
}

#[pyfunction]
fn keyfinder<'py>(py: Python<'py>, psk: &[u8], iv: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &link::keyfinder(psk, &as_iv(iv)?)))
}

#[pyfunction]
fn make_hello<'py>(py: Python<'py>, psk: &[u8], iv: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &link::make_hello(psk, &as_iv(iv)?)))
}

#[pyfunction]
fn find_psk(hello: &[u8], psks: Vec<Bound<'_, PyBytes>>) -> PyResult<Option<usize>> {
    Ok(link::find_psk(&sized("hello", hello)?, &slices(&psks)))
}

#[pyfunction]
fn derive_keys<'py>(
    py: Python<'py>,
    psk: &[u8],
    iv: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let (enc_key, mac_key) = link::derive_keys(psk, &as_iv(iv)?);
    Ok((PyBytes::new(py, &enc_key), PyBytes::new(py, &mac_key)))
}

/// `seal_batch` of either sealer: the frames in one `bytes`, sealed with the GIL released for a
/// big batch.
fn seal_packets<'py, S: FrameSealer + Send>(
    py: Python<'py>,
    sealer: &mut S,
    packets: &[&[u8]],
) -> PyResult<Bound<'py, PyBytes>> {
    let len = S::sealed_len(packets.iter().map(|p| p.len()), 0)?;
    bytes_written_by(py, len, |out| {
        maybe_detach(py, len, || sealer.seal_batch_into(packets, out))
    })
}

/// `seal_data_batch` of either sealer (see `Sealer.seal_data_batch`).
fn seal_data<'py, S: FrameSealer + Send>(
    py: Python<'py>,
    sealer: &mut S,
    ip_packets: &[Bound<'py, PyBytes>],
    timestamp_ms: u64,
    skip: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let ip_packets = skipped(ip_packets, skip)?;
    let len = S::sealed_len(ip_packets.iter().map(|p| p.len()), HEADER_LEN)?;
    bytes_written_by(py, len, |out| {
        maybe_detach(py, len, || {
            sealer.seal_data_batch_into(&ip_packets, timestamp_ms, out)
        })
    })
}

/// The bodies an opener's `feed` returned, as the `bytes` objects they were opened into.
fn opened<'py>(py: Python<'py>, bodies: Vec<BytesBody>) -> Vec<Bound<'py, PyBytes>> {
    bodies
        .into_iter()
        .map(|body| body.object.into_bound(py))
        .collect()
}

#[pyclass(name = "Sealer", module = "smolmesh._core")]
struct PySealer(link::Sealer);

/// The `#[pymethods]` of a sealer class: its constructor, given as tokens, and the methods both
/// sealer classes share, whose bodies are `seal_packets` and `seal_data` (PyO3 wants each class's
/// methods in one block).
macro_rules! sealer_pymethods {
    ($class:ident, $($constructor:tt)*) => {
        #[pymethods]
        impl $class {
            $($constructor)*

            fn seal<'py>(
                &mut self,
                py: Python<'py>,
                packet: &[u8],
            ) -> PyResult<Bound<'py, PyBytes>> {
                seal_packets(py, &mut self.0, &[packet])
            }

            fn seal_batch<'py>(
                &mut self,
                py: Python<'py>,
                packets: Vec<Bound<'py, PyBytes>>,
            ) -> PyResult<Bound<'py, PyBytes>> {
                seal_packets(py, &mut self.0, &slices(&packets))
            }

            /// `skip` bytes before each IP packet are left out: the header of a TUN read
            /// (IFF_VNET_HDR).
            #[pyo3(signature = (ip_packets, timestamp_ms, skip = 0))]
            fn seal_data_batch<'py>(
                &mut self,
                py: Python<'py>,
                ip_packets: Vec<Bound<'py, PyBytes>>,
                timestamp_ms: u64,
                skip: usize,
            ) -> PyResult<Bound<'py, PyBytes>> {
                seal_data(py, &mut self.0, &ip_packets, timestamp_ms, skip)
            }
        }
    };
}

sealer_pymethods!(
    PySealer,
    #[new]
    fn new(psk: &[u8], iv: &[u8]) -> PyResult<Self> {
        Ok(PySealer(link::Sealer::new(psk, &as_iv(iv)?)))
    }
);

#[pyclass(name = "Opener", module = "smolmesh._core")]
struct PyOpener(link::Opener<BytesBody>);

#[pymethods]
impl PyOpener {
    #[new]
    fn new(psk: &[u8], iv: &[u8]) -> PyResult<Self> {
        Ok(PyOpener(link::Opener::new(psk, &as_iv(iv)?)))
    }

    /// Runs with the GIL held: it makes a `bytes` object per packet as the stream reveals its
    /// length. Sealing, with every length known in advance, is what releases the GIL.
    fn feed<'py>(&mut self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let bodies = self.0.feed(chunk, |len| BytesBody::new(py, len))?;
        PyList::new(py, opened(py, bodies))
    }

    /// `feed`, then `triage` of what it opened, in one call: one crossing into Rust per chunk
    /// instead of two, which an idle node pays for with cold caches on every packet.
    fn feed_and_triage<'py>(
        &mut self,
        py: Python<'py>,
        chunk: &[u8],
        now_ms: u64,
        mut seen: PyRefMut<'_, PyDuplicateFilter>,
    ) -> PyResult<Bound<'py, PyList>> {
        let bodies = self.0.feed(chunk, |len| BytesBody::new(py, len))?;
        triage_rows(py, &opened(py, bodies), now_ms, &mut seen.0)
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.0.buffered()
    }
}

/// The connector's side of a secure_tcp handshake: `message()` goes out, `finish` reads the
/// answer. Noise's handshake state cannot be used twice, so `finish` takes it.
#[pyclass(name = "SecureInitiator", module = "smolmesh._core")]
struct PySecureInitiator {
    message: [u8; secure::SECURE_MESSAGE_LEN],
    initiator: Option<secure::Initiator>,
}

#[pymethods]
impl PySecureInitiator {
    #[new]
    fn new(psk: &[u8]) -> PyResult<Self> {
        let initiator = secure::Initiator::new(&as_psk(psk)?);
        Ok(PySecureInitiator {
            message: initiator.message1(),
            initiator: Some(initiator),
        })
    }

    fn message<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.message)
    }

    fn finish(&mut self, message2: &[u8]) -> PyResult<Option<(PySecureSealer, PySecureOpener)>> {
        let initiator = self
            .initiator
            .take()
            .ok_or_else(|| PyValueError::new_err("this handshake has already finished"))?;
        Ok(initiator
            .finish(message2)
            .map(|(sealer, opener)| (PySecureSealer(sealer), PySecureOpener(opener))))
    }
}

/// `(psk index, message 2, sealer, opener)` of a handshake the listener answered.
type Responded<'py> = (usize, Bound<'py, PyBytes>, PySecureSealer, PySecureOpener);

/// The listener's side of a secure_tcp handshake.
#[pyfunction]
fn secure_respond<'py>(
    py: Python<'py>,
    message1: &[u8],
    psks: Vec<Bound<'py, PyBytes>>,
) -> PyResult<Option<Responded<'py>>> {
    let psks: Vec<[u8; secure::PSK_LEN]> = psks
        .iter()
        .map(|psk| as_psk(psk.as_bytes()))
        .collect::<PyResult<_>>()?;
    let psks: Vec<&[u8; secure::PSK_LEN]> = psks.iter().collect();
    Ok(
        secure::respond(message1, &psks).map(|(index, message2, sealer, opener)| {
            (
                index,
                PyBytes::new(py, &message2),
                PySecureSealer(sealer),
                PySecureOpener(opener),
            )
        }),
    )
}

/// As `Sealer`, for secure_tcp frames.
#[pyclass(name = "SecureSealer", module = "smolmesh._core")]
struct PySecureSealer(secure::SecureSealer);

sealer_pymethods!(
    PySecureSealer,
    #[new]
    fn new(key: &[u8]) -> PyResult<Self> {
        Ok(PySecureSealer(secure::SecureSealer::new(&as_secure_key(
            key,
        )?)))
    }
);

/// As `Opener`, for secure_tcp frames: each packet is decrypted in the `bytes` object Python
/// receives.
#[pyclass(name = "SecureOpener", module = "smolmesh._core")]
struct PySecureOpener(secure::SecureOpener<BytesBody>);

#[pymethods]
impl PySecureOpener {
    #[new]
    fn new(key: &[u8]) -> PyResult<Self> {
        Ok(PySecureOpener(secure::SecureOpener::new(&as_secure_key(
            key,
        )?)))
    }

    /// Runs with the GIL held, as `Opener.feed`: it makes a `bytes` object per packet as the
    /// stream reveals its length.
    fn feed<'py>(&mut self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let bodies = self.0.feed(chunk, |len| BytesBody::new(py, len))?;
        PyList::new(py, opened(py, bodies))
    }

    /// As `Opener.feed_and_triage`; each echo packet opened adds a row `(ECHO_REQUEST_ROW or
    /// ECHO_REPLY_ROW, 0, b"", None)` after the triaged ones, for the link to act on.
    fn feed_and_triage<'py>(
        &mut self,
        py: Python<'py>,
        chunk: &[u8],
        now_ms: u64,
        mut seen: PyRefMut<'_, PyDuplicateFilter>,
    ) -> PyResult<Bound<'py, PyList>> {
        let bodies = self.0.feed(chunk, |len| BytesBody::new(py, len))?;
        let packets = opened(py, bodies);
        let rows = triage_rows(py, &packets, now_ms, &mut seen.0)?;
        for packet in &packets {
            if let Some(kind) = secure::echo_of(packet.as_bytes()) {
                let row: (u32, u64, &[u8], Option<()>) = (ECHO_ROW + u32::from(kind), 0, b"", None);
                rows.append(row)?;
            }
        }
        Ok(rows)
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.0.buffered()
    }

    #[getter]
    fn frames_opened(&self) -> u64 {
        self.0.frames_opened()
    }
}

/// The TUN writes for a batch of delivered packets (see `gro`): each a `bytes` of virtio_net_hdr
/// and packet or TCP super-packet, made with the GIL held, then filled with it released for a big
/// batch. The bodies are the opener's kind: `bytes` objects written in place, never zeroed.
#[pyfunction]
fn tcp_gro<'py>(
    py: Python<'py>,
    packets: Vec<Bound<'py, PyBytes>>,
    skip: usize,
) -> PyResult<Bound<'py, PyList>> {
    use link::FrameBody as _;
    let raw = slices(&packets);
    let ip_packets: Vec<&[u8]> = raw
        .iter()
        .map(|p| p.get(skip..).unwrap_or_default())
        .collect();
    let plan = gro::Plan::new(&ip_packets);
    let mut bodies: Vec<BytesBody> = plan
        .writes()
        .iter()
        .map(|write| BytesBody::new(py, write.size()))
        .collect();
    let len = bodies.iter().map(|body| body.len).sum();
    maybe_detach(py, len, || {
        for (index, body) in bodies.iter_mut().enumerate() {
            plan.write_into(index, body.bytes_mut());
        }
    });
    PyList::new(
        py,
        bodies.into_iter().map(|body| body.object.into_bound(py)),
    )
}

#[pyfunction]
fn parse_header(packet: &[u8]) -> Option<(u64, u8)> {
    packet::parse_header(packet)
}

#[pyfunction]
#[pyo3(signature = (ip_packet, skip = 0))]
fn ip_destination<'py>(
    py: Python<'py>,
    ip_packet: &[u8],
    skip: usize,
) -> Option<Bound<'py, PyBytes>> {
    packet::ip_destination(ip_packet.get(skip..)?).map(|address| PyBytes::new(py, address))
}

#[pyfunction]
fn make_packet<'py>(
    py: Python<'py>,
    timestamp_ms: u64,
    cmd: u8,
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, HEADER_LEN + payload.len(), |out| {
        packet::write_header(out, timestamp_ms, cmd);
        out[HEADER_LEN..].copy_from_slice(payload);
        Ok(())
    })
}

#[pyfunction]
#[pyo3(signature = (ip_packet, mtu, source_v6 = None, source_v4 = None))]
fn icmp_too_big<'py>(
    py: Python<'py>,
    ip_packet: &[u8],
    mtu: u16,
    source_v6: Option<&[u8]>,
    source_v4: Option<&[u8]>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let source_v6: Option<[u8; 16]> = source_v6.map(|a| sized("source_v6", a)).transpose()?;
    let source_v4: Option<[u8; 4]> = source_v4.map(|a| sized("source_v4", a)).transpose()?;
    let error = icmp::too_big(ip_packet, mtu, source_v6.as_ref(), source_v4.as_ref());
    Ok(error.map(|e| PyBytes::new(py, &e)))
}

#[pyclass(name = "DuplicateFilter", module = "smolmesh._core")]
struct PyDuplicateFilter(dedup::DuplicateFilter);

#[pymethods]
impl PyDuplicateFilter {
    #[new]
    #[pyo3(signature = (capacity = DUPLICATE_FILTER_CAPACITY, seed = None))]
    fn new(capacity: usize, seed: Option<&[u8]>) -> PyResult<Self> {
        let seed = seed.map(|s| sized("seed", s)).transpose()?;
        Ok(PyDuplicateFilter(dedup::DuplicateFilter::new(
            capacity, seed,
        )))
    }

    fn insert(&mut self, packet: &[u8]) -> bool {
        self.0.insert(packet)
    }

    fn __contains__(&self, packet: &[u8]) -> bool {
        self.0.contains(packet)
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }
}

#[pyfunction]
fn triage<'py>(
    py: Python<'py>,
    packets: Vec<Bound<'py, PyBytes>>,
    now_ms: u64,
    mut seen: PyRefMut<'_, PyDuplicateFilter>,
) -> PyResult<Bound<'py, PyList>> {
    triage_rows(py, &packets, now_ms, &mut seen.0)
}

/// `triage` over packets already in `bytes` objects: one row per packet that survives.
/// Rows of `SecureOpener.feed_and_triage` for echo packets: `ECHO_ROW` plus the packet's byte, a
/// value no mesh packet's cmd (a byte) can take.
const ECHO_ROW: u32 = 0x100;

fn triage_rows<'py>(
    py: Python<'py>,
    packets: &[Bound<'py, PyBytes>],
    now_ms: u64,
    filter: &mut dedup::DuplicateFilter,
) -> PyResult<Bound<'py, PyList>> {
    let slices = slices(packets);
    let bytes = slices.iter().map(|p| p.len()).sum();
    let accepted = maybe_detach(py, bytes, || packet::triage(&slices, now_ms, filter));
    let rows = accepted.iter().map(|a| {
        // The packet goes back as the very bytes object it came in as: no copy.
        let fields: [Bound<'py, PyAny>; 4] = [
            a.cmd.into_pyobject(py).expect("int").into_any(),
            a.timestamp_ms.into_pyobject(py).expect("int").into_any(),
            PyBytes::new(py, a.key).into_any(),
            if a.fresh {
                packets[a.index].clone().into_any()
            } else {
                py.None().into_bound(py)
            },
        ];
        PyTuple::new(py, fields).expect("4 fields")
    });
    PyList::new(py, rows)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("HELLO_LEN", HELLO_LEN)?;
    m.add("IV_LEN", IV_LEN)?;
    m.add("MAC_LEN", MAC_LEN)?;
    m.add("HEADER_LEN", HEADER_LEN)?;
    m.add("MAX_PACKET_LEN", MAX_PACKET_LEN)?;
    m.add("WINDOW_MS", WINDOW_MS)?;
    m.add("DUPLICATE_FILTER_CAPACITY", DUPLICATE_FILTER_CAPACITY)?;
    m.add("CMD_NAME", CMD_NAME)?;
    m.add("CMD_IPV6", CMD_IPV6)?;
    m.add("CMD_IPV4", CMD_IPV4)?;
    m.add("CMD_DATA", CMD_DATA)?;
    m.add("VNET_HDR_LEN", gro::VNET_HDR_LEN)?;
    m.add("SECURE_MESSAGE_LEN", secure::SECURE_MESSAGE_LEN)?;
    m.add(
        "ECHO_REQUEST",
        PyBytes::new(m.py(), &[secure::ECHO_REQUEST]),
    )?;
    m.add("ECHO_REPLY", PyBytes::new(m.py(), &[secure::ECHO_REPLY]))?;
    m.add(
        "ECHO_REQUEST_ROW",
        ECHO_ROW + u32::from(secure::ECHO_REQUEST),
    )?;
    m.add("ECHO_REPLY_ROW", ECHO_ROW + u32::from(secure::ECHO_REPLY))?;
    m.add_function(wrap_pyfunction!(ernd, m)?)?;
    m.add_function(wrap_pyfunction!(tcp_gro, m)?)?;
    m.add_function(wrap_pyfunction!(speck_round_keys, m)?)?;
    m.add_function(wrap_pyfunction!(speck_encrypt, m)?)?;
    m.add_function(wrap_pyfunction!(keystream, m)?)?;
    m.add_function(wrap_pyfunction!(multispeck_py, m)?)?;
    m.add_function(wrap_pyfunction!(name_to_ipv6, m)?)?;
    m.add_function(wrap_pyfunction!(names_to_ipv6, m)?)?;
    m.add_function(wrap_pyfunction!(keyfinder, m)?)?;
    m.add_function(wrap_pyfunction!(make_hello, m)?)?;
    m.add_function(wrap_pyfunction!(find_psk, m)?)?;
    m.add_function(wrap_pyfunction!(derive_keys, m)?)?;
    m.add_function(wrap_pyfunction!(parse_header, m)?)?;
    m.add_function(wrap_pyfunction!(ip_destination, m)?)?;
    m.add_function(wrap_pyfunction!(make_packet, m)?)?;
    m.add_function(wrap_pyfunction!(triage, m)?)?;
    m.add_function(wrap_pyfunction!(icmp_too_big, m)?)?;
    m.add_function(wrap_pyfunction!(secure_respond, m)?)?;
    m.add_class::<PySealer>()?;
    m.add_class::<PyOpener>()?;
    m.add_class::<PySecureInitiator>()?;
    m.add_class::<PySecureSealer>()?;
    m.add_class::<PySecureOpener>()?;
    m.add_class::<PyDuplicateFilter>()?;
    Ok(())
}
