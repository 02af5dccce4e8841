// bench:kong reference point, not a product: the cheapest plugin that routes. Access sets a fixed
// target (one PDK call), log reads one kong.ctx.shared value (one PDK call): what the plugin
// server and its RPC round trips cost, with none of our code loaded.
'use strict';

exports.Version = '0.0.1';
exports.Priority = 790;
exports.Schema = [];

class Plugin {
  async access(kong) {
    await kong.service.setTarget('127.0.0.1', 8000);
  }

  async log(kong) {
    await kong.ctx.shared.get('llm_balancer_pick');
  }
}

exports.Plugin = Plugin;
