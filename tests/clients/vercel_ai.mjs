// The Vercel AI SDK case of the real-clients tier (see python_clients.py for the contract).
//
//   node vercel_ai.mjs GATEWAY_URL KEY MODEL
//
// Runs generateText and streamText with one tool, save_word(word), through each of the SDK's
// providers that reach the gateway: @ai-sdk/openai .chat() and .responses(), @ai-sdk/anthropic.
// Prints {"<api>/<stream|nostream>": {"called": [...], "final": "...", "error": "..."}}.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, isStepCount, streamText, tool } from "ai";
import { z } from "zod";

const [base, key, model] = process.argv.slice(2);
const PROMPT = "Save the word with the save_word tool, then say you are done.";
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: key });
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey: key });
const models = {
  chat: () => openai.chat(model),
  responses: () => openai.responses(model),
  messages: () => anthropic(model),
};

async function run(api, stream, called, prompt) {
  const saveWord = tool({
    description: "Save a word.",
    inputSchema: z.object({ word: z.string() }),
    execute: async ({ word }) => {
      called.push(word);
      return `saved ${word}`;
    },
  });
  const options = {
    model: models[api](),
    tools: { save_word: saveWord },
    prompt,
    stopWhen: isStepCount(3),
    maxRetries: 0,
    maxOutputTokens: 1024,
  };
  if (!stream) {
    return (await generateText(options)).text;
  }
  let failure = null;
  const result = streamText({ ...options, onError: ({ error }) => (failure = error) });
  let text = "";
  for await (const part of result.textStream) text += part;
  if (failure) throw failure;
  return (await result.text) || text;
}

const results = {};
for (const api of ["chat", "responses", "messages"]) {
  for (const stream of [false, true]) {
    const called = [];
    const entry = { called, final: null, error: null };
    try {
      entry.final = await run(api, stream, called, `${PROMPT} [case:${api}/${stream ? "stream" : "nostream"}]`);
    } catch (error) {
      entry.error = String(error?.stack ?? error).slice(0, 3000);
    }
    results[`${api}/${stream ? "stream" : "nostream"}`] = entry;
  }
}
process.stdout.write(JSON.stringify(results));
