// Package ssh is tinyfarm's SSH and SFTP client for provisioning running guests.
//
// It offers:
//
//   - the farm key: one ed25519 client key per state dir ([EnsureFarmKey]), whose public half goes
//     into every guest's authorized_keys;
//   - guest host keys ([GenerateHostKey], and the set of ed25519, ecdsa and rsa keys
//     [GenerateHostKeySet]) in OpenSSH's and in dropbear's own file formats, laid out where Tiny
//     Core's SSH servers read them ([HostKeySet.Files]), so an image builder can install the
//     private halves in the guest and tinyfarm pins the public halves;
//   - a [Client] ([Dial]) that holds one connection per guest and is safe for concurrent use:
//     commands ([Client.Run], [Client.RunStream]) each get their own session, and file transfer
//     ([Client.Put], [Client.Get], [Client.ReadFile], [Client.WriteFile]) shares one SFTP
//     subsystem per connection; a guest only another host reaches is dialed through that host
//     ([Config.Via]: a jump, as `ssh -J`).
//
// Host keys are always pinned, either to public keys ([Config.HostKey], [Config.HostKeys]) or to
// a known_hosts file ([Config.KnownHosts]). There is no trust on first use and no way to skip
// the check. The client offers only the pinned keys' algorithms, which also avoids the handshake
// failure of x/crypto/ssh against a dropbear that holds a single ed25519 host key; with a set, a
// server lacking the preferred algorithm is verified with another key of the set.
//
// Errors read "op subject: cause" and wrap the sentinels [ErrAuth], [ErrHostKey], [ErrTimeout],
// [ErrForwarding] and [ErrExit], so callers test them with errors.Is. A command that exits non-zero returns both
// its [Result] and an [*ExitError]; [RunOptions.IgnoreExit] makes that a plain Result. Dial
// retries only dial and transport failures, never authentication or host key errors.
//
// Cancellation: a cancelled command is sent SIGKILL and its session closed. File transfers stop
// at the next chunk once ctx is done; a single SFTP request already sent is not interrupted.
//
// The package has no Lua dependency; the Lua binding lives beside it. The sshtest subpackage
// provides an in-process SSH+SFTP server for tests.
package ssh
