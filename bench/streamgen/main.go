// streamgen opens N concurrent streaming requests and reports time to first token and drops.
// It is the benchmark's stream load generator: Go, so that on a 2-core machine the client costs
// less than the systems it measures (bench/stream_client.py is the Python equivalent).
//
//	streamgen -url http://127.0.0.1:8080 -streams 1000 -model bench:bench -key K [-surface chat]
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
	flag.Parse()

	path, done := "/v1/chat/completions", []byte("[DONE]")
	body := map[string]any{"model": *model, "stream": true,
		"messages": []map[string]string{{"role": "user", "content": "go"}}}
	if *surface == "messages" {
		path, done = "/v1/messages", []byte("message_stop")
		body["max_tokens"] = 200
	}
	payload, _ := json.Marshal(body)
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: *streams * 2, MaxIdleConnsPerHost: *streams * 2, DisableCompression: true,
	}, Timeout: 120 * time.Second}

	var mu sync.Mutex
	var ttfts []float64
	dropped, tokens := 0, 0
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		"client": "streamgen (Go)",
	})
	fmt.Fprintln(os.Stdout, string(out))
}
