// npm start's demo, end to end but short: real nginx + njs in front of four emulated replicas,
// demo traffic for a few seconds, the view printed (no terminal: plain snapshots), then
// everything it started is stopped. Needs the built bundle and nginx (npm test's pretest).
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startDemo } from '../testbed/demo/demo';
import { parseDemoArgs, UsageError } from '../testbed/demo/options';

function refused(address: string): Promise<boolean> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('npm start (demo)', () => {
  it('balances demo traffic over four emulated replicas, shows them, and stops everything', async () => {
    let output = '';
    const options = parseDemoArgs(['--duration', '4', '--rate', '8', '--time-scale', '0.05', '--port', '0', '--strategy', 'round-robin']);
    const demo = await startDemo(options, { write: (text) => (output += text), interactive: false });
    const summary = await demo.done;
    // Round robin: every emulated replica got traffic through the gateway, and nothing failed.
    expect(Object.keys(summary.picks).sort()).toEqual(['a100-a', 'a100-b', 'h100-a', 'h100-b']);
    for (const id of Object.keys(summary.picks)) expect(summary.picks[id], id).toBeGreaterThan(0);
    expect(summary.completed).toBeGreaterThan(5);
    expect(summary.errors).toBe(0);
    expect(output).toContain('/v1/chat/completions');
    expect(output).toMatch(/h100-a\s+h100\s+1\s+healthy/);
    expect(output).toContain('a100-b');
    // Stopped: the gateway port no longer accepts.
    expect(await refused(demo.gatewayUrl.replace('http://', ''))).toBe(true);
  }, 30_000);

  it.each([
    [['--strategy', 'fastest'], '--strategy: must be one of'],
    [['--replicas', 'h100,tpu'], '--replicas: must be 1 to 16 of'],
    [['--rate', '-1'], '--rate: must be a number between 0 and 1000'],
    [['--bogus'], 'unknown option "--bogus"'],
  ])('rejects %j with a clear message', (argv, message) => {
    expect(() => parseDemoArgs(argv)).toThrow(UsageError);
    expect(() => parseDemoArgs(argv)).toThrow(message);
  });

  it('--no-traffic turns the demo traffic off, flags set the rest', () => {
    expect(parseDemoArgs(['--no-traffic', '--replicas', 'h100,l4', '--time-scale', '0.5'])).toMatchObject({ ratePerS: 0, replicas: ['h100', 'l4'], timeScale: 0.5, port: -1 });
  });
});
