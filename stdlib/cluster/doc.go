// Package cluster joins tinyfarm hosts into one farm whose only shared state
// is etcd: the real etcd, either a member embedded in each host's
// `tinyfarm cluster serve` daemon (go.etcd.io/etcd/server/v3/embed, as k3s
// does) or an existing etcd cluster given by endpoints and certificates.
//
// Nothing here is a consensus or membership protocol of its own. Hosts are
// etcd leases (a host that stops renewing is down after the lease TTL),
// every allocation (guest names, farm subnets, guest IPs, user-namespace uid
// ranges) is one etcd transaction that only succeeds if the thing is still
// free, routes are etcd keys every host's daemon watches, and members join
// and leave through etcd's own MemberAdd and MemberRemove.
//
// Layout of the keys, all under Prefix:
//
//	hosts/NAME      Facts (JSON), written on join and refreshed
//	alive/NAME      attached to the host's lease: present while it is up
//	guests/NAME     GuestRecord: the cluster-wide claim of a guest name
//	subnets/CIDR    the host that owns a farm subnet
//	hostnet/HOST    the farm subnet of HOST
//	ips/IP          the guest that owns a guest IP
//	uids/START      the guest that owns a uid range
//	routes/VHOST    Route: a vhost served by every host's proxy
//	join/SHA256     a one-time join secret (with a lease: it expires)
//	drain/HOST      DrainRequest: HOST is drained by its daemon (cordoned
//	                while the key exists; see drain.go)
//	drainstep/HOST/GUEST  DrainStep: one guest's move
//	drainplan/HOST, drainplanstep/HOST/GUEST  the same for a dry run
//	hostmem/HOST    the memory claimed on HOST
//	config          Settings: the cluster range, subnet size, uid ranges
package cluster
