'use strict'

const path = require('path')
const { CODES, codedError } = require('./errors')

// The addon is loaded on first use, not at require time, so that `require()` of the
// package (and its types, validation and node runner) works even before the Rust
// addon is built, and the failure names the fix.

let cached

function loadNative() {
  if (cached) return cached
  const file = path.join(__dirname, '..', 'native.js')
  try {
    cached = require(file)
  } catch (cause) {
    throw codedError(
      CODES.NATIVE_MISSING,
      `The native addon of @flowcraft/rabbitmq-adapter could not be loaded (${cause && cause.message}). ` +
        'In a checkout, run `npm run build`; in an installed package, reinstall it for this platform.',
      { cause },
    )
  }
  return cached
}

module.exports = { loadNative }
