// Package thumbs generates image thumbnails with a bounded pool of workers.
package thumbs

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	_ "image/png" // register the PNG decoder
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/image/draw"
)

// ErrTooLarge is returned for images whose pixel count exceeds MaxPixels.
var ErrTooLarge = errors.New("thumbs: image too large")

// MaxPixels guards against decompression bombs: a tiny PNG can declare a huge canvas.
const MaxPixels = 40_000_000

// Job describes one thumbnail to produce.
type Job struct {
	Src     string
	Dst     string
	MaxSide int
}

// Result reports what happened to one Job.
type Result struct {
	Job      Job
	Err      error
	Duration time.Duration
	Width    int
	Height   int
}

// Run processes jobs with n workers and returns results in completion order.
// It stops early, returning ctx.Err(), if the context is cancelled.
func Run(ctx context.Context, jobs []Job, n int) ([]Result, error) {
	if n < 1 {
		return nil, fmt.Errorf("thumbs: need at least one worker, got %d", n)
	}
	in := make(chan Job)
	out := make(chan Result, len(jobs))
	var wg sync.WaitGroup

	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range in {
				start := time.Now()
				w, h, err := process(job)
				out <- Result{Job: job, Err: err, Duration: time.Since(start), Width: w, Height: h}
			}
		}()
	}

	go func() {
		defer close(in)
		for _, job := range jobs {
			select {
			case in <- job:
			case <-ctx.Done():
				return
			}
		}
	}()

	go func() {
		wg.Wait()
		close(out)
	}()

	results := make([]Result, 0, len(jobs))
	for r := range out {
		results = append(results, r)
	}
	if err := ctx.Err(); err != nil {
		return results, err
	}
	return results, nil
}

func process(job Job) (int, int, error) {
	f, err := os.Open(job.Src)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()

	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		return 0, 0, fmt.Errorf("decode config %s: %w", job.Src, err)
	}
	if cfg.Width*cfg.Height > MaxPixels {
		return 0, 0, fmt.Errorf("%s is %dx%d: %w", job.Src, cfg.Width, cfg.Height, ErrTooLarge)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	src, _, err := image.Decode(f)
	if err != nil {
		return 0, 0, fmt.Errorf("decode %s: %w", job.Src, err)
	}

	w, h := fit(src.Bounds().Dx(), src.Bounds().Dy(), job.MaxSide)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Over, nil)

	if err := os.MkdirAll(filepath.Dir(job.Dst), 0o755); err != nil {
		return 0, 0, err
	}
	tmp := job.Dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return 0, 0, err
	}
	if err := jpeg.Encode(out, dst, &jpeg.Options{Quality: 82}); err != nil {
		out.Close()
		os.Remove(tmp)
		return 0, 0, err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return 0, 0, err
	}
	// Rename is atomic, so readers never see a half-written thumbnail.
	return w, h, os.Rename(tmp, job.Dst)
}

// fit scales (w, h) down so the longer side is at most max, keeping the aspect ratio.
func fit(w, h, max int) (int, int) {
	if w <= max && h <= max {
		return w, h
	}
	if w >= h {
		return max, max * h / w
	}
	return max * w / h, max
}
