export { main } from './main.js';
export { serverOptionsFrom } from './commands/serve.js';
