//! A big value's JSON text goes to V8 as an external string: V8 reads the bytes the
//! core holds (a row read, a node's response) rather than a copy of its own, and
//! drops the core's share when it collects the string (issue 12: a worker's peak
//! memory is a small multiple of the largest value in flight).
//!
//! Node-API's `node_api_create_external_string_latin1` (Node 20.4+; a one-byte
//! string, so only for ASCII text, whose bytes are the same in Latin-1 and UTF-8)
//! is looked up when first needed, so an older Node copies as before.

use flowcraft_core::json_text::JsonText;
use napi::sys::{napi_env, napi_status, napi_value, Status};
use std::ffi::{c_char, c_void};
use std::sync::OnceLock;

/// A text of at least this many bytes goes to V8 as an external string.
const EXTERNAL_TEXT_BYTES: usize = 1 << 20;
/// V8's longest string (`v8::String::kMaxLength` on 64-bit): a longer one fails as a copy would.
const V8_MAX_STRING: usize = (1 << 29) - 24;

type Finalize = unsafe extern "C" fn(napi_env, *mut c_void, *mut c_void);
type CreateExternalLatin1 = unsafe extern "C" fn(
    napi_env,
    *const c_char,
    isize,
    Option<Finalize>,
    *mut c_void,
    *mut napi_value,
    *mut bool,
) -> napi_status;

fn create_external_latin1() -> Option<CreateExternalLatin1> {
    static FOUND: OnceLock<Option<CreateExternalLatin1>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: a lookup in the process's own symbols (Node's); the name is NUL-terminated.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"node_api_create_external_string_latin1".as_ptr()) };
        // SAFETY: Node-API declares the function with this signature.
        (!found.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, CreateExternalLatin1>(found) })
    })
}

/// V8 collected the string: the core's share of the text goes.
unsafe extern "C" fn release(_env: napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the Box `external` made for this string, released once.
    drop(unsafe { Box::from_raw(hint.cast::<JsonText>()) });
}

/// `text` as an external V8 string, or `None` when it is small, not ASCII, or this
/// Node has no external strings (the caller then copies it).
///
/// # Safety
/// Called on the JS thread with its `env`.
pub unsafe fn external(env: napi_env, text: &JsonText) -> Option<napi_value> {
    let bytes = text.as_str();
    if bytes.len() < EXTERNAL_TEXT_BYTES || bytes.len() > V8_MAX_STRING || !bytes.is_ascii() {
        return None;
    }
    let create = create_external_latin1()?;
    // the clone keeps the bytes where they are until `release` (clones share them)
    let share = Box::into_raw(Box::new(text.clone()));
    // SAFETY: `share` was just made and is not freed before the call below returns.
    let bytes = unsafe { (*share).as_str() };
    let mut value = std::ptr::null_mut();
    let mut copied = false;
    // SAFETY: the bytes stay valid while `share` lives; `release` frees it once, when V8
    // collects the string (at once when V8 copied it instead).
    let status = unsafe {
        create(env, bytes.as_ptr().cast(), bytes.len() as isize, Some(release), share.cast(), &mut value, &mut copied)
    };
    // On a failure Node may or may not have taken the share: it is left to it (a rare
    // leak rather than a double free), and the caller copies the text.
    (status == Status::napi_ok).then_some(value)
}
