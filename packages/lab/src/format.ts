/** Human-readable output of the CLI (pure). */
import type { ClusterDescription } from './cluster.js';

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** What `fleet-lab up` and `fleet-lab status` print. */
export function formatDescription(d: ClusterDescription): string {
  const lines = [
    `cluster ${d.name}${d.shareNet ? ' (shared host network)' : ` on ${d.subnet ?? '?'}`}, state in ${d.stateDir}`,
    `etcd for machines: ${d.etcdEndpoints.join(',')}`,
    `etcd for the host: ${d.hostEtcdEndpoints.join(',')}`,
  ];
  const down = d.etcdMembers.filter((m) => m.pid === null).map((m) => m.name);
  if (down.length > 0) lines.push(`etcd members stopped: ${down.join(', ')}`);
  lines.push('');
  const rows = [['MACHINE', 'STATUS', 'MACHINE ID', 'IP', 'PID', 'D-BUS SOCKET (from the host)']];
  for (const m of d.machines) {
    rows.push([
      m.name,
      m.partitioned ? `${m.status},partitioned` : m.status,
      m.machineID,
      m.ip,
      m.pid === null ? '-' : String(m.pid),
      m.dbusSocketPath ?? '-',
    ]);
  }
  lines.push(table(rows));
  return lines.join('\n');
}
