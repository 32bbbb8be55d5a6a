<qgis version="3.34" styleCategories="Symbology">
  <!-- prom3e-geo style: diversity band 1 (shannon, nats) -->
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1" classificationMin="0.0" classificationMax="3.0" nodataColor="">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="0.0" maximumValue="3.0">
          <item alpha="255" value="0" label="0" color="#000004"/>
          <item alpha="255" value="0.75" label="0.75" color="#51127c"/>
          <item alpha="255" value="1.5" label="1.5" color="#b73779"/>
          <item alpha="255" value="2.25" label="2.25" color="#fc8961"/>
          <item alpha="255" value="3" label="3" color="#fcfdbf"/>
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0"/>
    <rasterresampler maxOversample="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
