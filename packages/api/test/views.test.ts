import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { currentStateOn } from '@fleet/api';
import type { PlacementRecord, StateRecord } from '@fleet/registry';

const placed = (desiredState: PlacementRecord['desiredState']): PlacementRecord => ({
  hash: 'h',
  desiredState,
});
const reported = (activeState: string): StateRecord => ({
  hash: 'h',
  loadState: 'loaded',
  activeState,
  subState: 'x',
});

describe('current state on the placed machine (fleet-compat §4)', () => {
  const table: Array<[string, PlacementRecord, StateRecord | undefined, string]> = [
    ['nothing reported yet', placed('launched'), undefined, 'inactive'],
    ['reported, stopped', placed('loaded'), reported('inactive'), 'loaded'],
    ['reported, not yet started', placed('launched'), reported('inactive'), 'loaded'],
    ['active', placed('launched'), reported('active'), 'launched'],
    ['activating', placed('launched'), reported('activating'), 'launched'],
    ['reloading', placed('launched'), reported('reloading'), 'launched'],
    ['still active while being stopped', placed('loaded'), reported('active'), 'launched'],
    ['deactivating', placed('loaded'), reported('deactivating'), 'loaded'],
    ['failed while it should run: the agent started it', placed('launched'), reported('failed'), 'launched'],
    ['failed while it should only be loaded', placed('loaded'), reported('failed'), 'loaded'],
    ['a report without systemd states', placed('launched'), { hash: 'h' }, 'loaded'],
  ];
  for (const [why, placement, state, want] of table) {
    it(`${why} → ${want}`, () => {
      assert.equal(currentStateOn(placement, state), want);
    });
  }
});
