'use strict'

// The package ships one addon (Linux, x64, glibc): elsewhere the first use says so
// plainly, naming the platform, instead of a loader's generic advice.

function loadOn(platform, arch) {
	const saved = { platform: process.platform, arch: process.arch }
	Object.defineProperty(process, 'platform', { value: platform })
	Object.defineProperty(process, 'arch', { value: arch })
	try {
		let err
		jest.isolateModules(() => {
			try {
				require('../lib/load-native').loadNative()
			} catch (e) {
				err = e
			}
		})
		return err
	} finally {
		Object.defineProperty(process, 'platform', { value: saved.platform })
		Object.defineProperty(process, 'arch', { value: saved.arch })
	}
}

test('on an unsupported platform the addon is refused with ERR_NATIVE_MISSING naming it', () => {
	for (const [platform, arch, name] of [
		['darwin', 'arm64', 'darwin-arm64'],
		['linux', 'arm64', 'linux-arm64-gnu'],
		['win32', 'x64', 'win32-x64'],
	]) {
		const err = loadOn(platform, arch)
		expect(err).toMatchObject({ code: 'ERR_NATIVE_MISSING' })
		expect(err.message).toContain(`this is ${name}`)
		expect(err.message).toMatch(/Linux on x64 with glibc only/)
	}
})

test('on Linux x64 with glibc the addon loads', () => {
	expect(loadOn(process.platform, process.arch)).toBeUndefined()
})
