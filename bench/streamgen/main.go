// streamgen opens N streaming requests and reports time to first token and drops.
// It is the benchmark's stream load generator: Go, so that on a 2-core machine the client costs
// less than the systems it measures (bench/stream_client.py is the Python equivalent).
//
//	streamgen -url http://127.0.0.1:8080 -streams 1000 -model bench:bench -key K [-surface chat]
//	          [-rate 200 -tokens 250]
//
// Without -rate all N start at once (a burst); with it they start -rate a second, evenly
// spaced (spread arrivals). -tokens asks the bench upstream (bench/upstream_fast.py) for that
// many tokens per stream, through the Chat API's `metadata` field, which proxies pass through.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "base URL")
	streams := flag.Int("streams", 1000, "concurrent streams")
	model := flag.String("model", "bench", "model")
	key := flag.String("key", "", "API key")
	surface := flag.String("surface", "chat", "chat or messages")
	rate := flag.Float64("rate", 0, "new streams per second (0: all at once)")
	length := flag.Int("tokens", 0, "tokens per stream asked of the bench upstream (0: its default)")
	flag.Parse()

	path, done := "/v1/chat/completions", []byte("[DONE]")
	body := map[string]any{"model": *model, "stream": true,
		"messages": []map[string]string{{"role": "user", "content": "go"}}}
	if *surface == "messages" {
		path, done = "/v1/messages", []byte("message_stop")
		body["max_tokens"] = 200
	}
	if *length > 0 {
		body["metadata"] = map[string]string{"bench_tokens": fmt.Sprint(*length)}
	}
	payload, _ := json.Marshal(body)
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: *streams * 2, MaxIdleConnsPerHost: *streams * 2, DisableCompression: true,
	}, Timeout: 120 * time.Second}

	var mu sync.Mutex
	var ttfts []float64
	dropped, tokens, open, peak := 0, 0, 0, 0
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *streams; i++ {
		if *rate > 0 {
			// Evenly spaced from the start (not after each other's sleeps): no drift.
			at := start.Add(time.Duration(float64(i) / *rate * float64(time.Second)))
			time.Sleep(time.Until(at))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			open++
			if open > peak {
				peak = open
			}
			mu.Unlock()
			defer func() {
				mu.Lock()
				open--
				mu.Unlock()
			}()
			req, _ := http.NewRequest("POST", *url+path, bytes.NewReader(payload))
			req.Header.Set("content-type", "application/json")
			req.Header.Set("authorization", "Bearer "+*key)
			began := time.Now()
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				if resp != nil {
					resp.Body.Close()
				}
				mu.Lock()
				dropped++
				mu.Unlock()
				return
			}
			defer resp.Body.Close()
			reader := bufio.NewReaderSize(resp.Body, 64*1024)
			first := -1.0
			count, finished := 0, false
			buf := make([]byte, 32*1024)
			var tail []byte
			for {
				n, err := reader.Read(buf)
				if n > 0 {
					if first < 0 {
						first = float64(time.Since(began).Microseconds()) / 1000
					}
					count += bytes.Count(buf[:n], []byte("tok"))
					tail = append(tail, buf[:n]...)
					if len(tail) > 128 {
						tail = tail[len(tail)-128:]
					}
				}
				if err != nil {
					break
				}
			}
			finished = bytes.Contains(tail, done)
			mu.Lock()
			defer mu.Unlock()
			if first < 0 || !finished {
				dropped++
				return
			}
			ttfts = append(ttfts, first)
			tokens += count
		}()
	}
	wg.Wait()
	sort.Float64s(ttfts)
	pct := func(q float64) float64 {
		if len(ttfts) == 0 {
			return -1
		}
		i := int(q * float64(len(ttfts)))
		if i >= len(ttfts) {
			i = len(ttfts) - 1
		}
		return ttfts[i]
	}
	out, _ := json.Marshal(map[string]any{
		"ttft_p50_ms": pct(0.5), "ttft_p99_ms": pct(0.99), "completed": len(ttfts),
		"dropped": dropped, "tokens": tokens, "seconds": time.Since(start).Seconds(),
		"client": "streamgen (Go)", "peak_open": peak, "rate": *rate,
	})
	fmt.Fprintln(os.Stdout, string(out))
}
